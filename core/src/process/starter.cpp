#include "process/starter.hpp"

namespace zmp::detail {

Starter& starter_for(StartMethod method) {
    switch (method) {
        case StartMethod::spawn:
            return spawn_starter();
        case StartMethod::forkserver:
            return forkserver_starter();
        case StartMethod::fork:
            break;
    }
    return fork_starter();
}

}  // namespace zmp::detail
