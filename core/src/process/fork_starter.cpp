// The fork start method: the child is a copy of this process, forked by the thread that calls
// start(). Any callable works, since nothing has to travel.
#include <unistd.h>

#include <cerrno>

#include "process/child.hpp"
#include "process/starter.hpp"
#include "runtime/identity.hpp"
#include "runtime/stdio.hpp"

namespace zmp::detail {
namespace {

class ForkStarter final : public Starter {
public:
    std::unique_ptr<Popen> start(const ProcessState& st, Process& process) override {
        ThisProcess& me = this_process();
        const ChildIdentity who{st.name, st.daemon, st.identity, me.pid(), me.name(), me.on_main_thread()};
        flush_std_streams();  // what this process printed comes before what the child prints
        const pid_t pid = ::fork();
        if (pid < 0) throw_os_error("fork", errno);
        if (pid == 0) {
            // Another thread may have printed between the flush and the fork: that is the
            // parent's to write. Kept, it would be written twice.
            discard_inherited_stdio();
            become_child(who, StartMethod::fork);
            run_child(process);
        }
        return std::make_unique<WaitpidPopen>(pid);
    }
};

}  // namespace

Starter& fork_starter() {
    static Starter* made = new ForkStarter();  // never destroyed: children may start during exit
    return *made;
}

}  // namespace zmp::detail
