#include "runtime/exit.hpp"

#include <unistd.h>

#include "runtime/hooks.hpp"
#include "runtime/stdio.hpp"
#include "runtime/zmq_context.hpp"

namespace zmp::detail {

[[noreturn]] void exit_child(int code) {
    run_exit_hooks();
    flush_std_streams();
    close_thread_sockets();
    ::_exit(code);
}

}  // namespace zmp::detail
