// The spawn start method: the child is a fresh run of this binary; its zmp::init() receives the
// bootstrap (bootstrap.hpp) through the descriptor exec_self() hands it.
#include <string>

#include "process/bootstrap.hpp"
#include "process/exec_self.hpp"
#include "process/starter.hpp"
#include "runtime/pidfd.hpp"
#include "runtime/run.hpp"

namespace zmp::detail {
namespace {

class SpawnStarter final : public Starter {
public:
    // Waits until the child has taken over, so that a child whose main() does not call zmp::init()
    // is reported here (ProcessError) rather than later.
    std::unique_ptr<Popen> start(const ProcessState& st, Process& process) override {
        if (this_run().argv().empty()) {
            throw ValueError("the spawn start method needs zmp::init(argc, argv) as the first line of main()");
        }
        BootstrapMessage boot = make_bootstrap(st, process, StartMethod::spawn);
        auto [mine, theirs] = transport::FdChannel::pair();
        const pid_t pid = exec_self("ZMP_SPAWN_FD", theirs.fd());
        theirs.close();
        auto popen = std::make_unique<WaitpidPopen>(pid);
        std::string reason;  // what the child said when it could not start (bootstrap.cpp)
        try {
            mine.send(boot.bytes.data(), boot.bytes.size(), boot.fds);
            transport::ChannelMessage reply;
            if (mine.recv(reply) && reply.size == 1) return popen;
            if (reply.size > 1) reason.assign(reply.data.get(), reply.size);
        } catch (const ProcessError&) {
            // the child is gone; find out how below
        }
        while (!popen->poll()) wait_fd_readable(popen->sentinel(), Deadline::never());
        if (!reason.empty()) throw ProcessError("the spawned child of " + st.name + " could not start: " + reason);
        throw ProcessError("the spawned child of " + st.name + " (pid " + std::to_string(pid) + ") exited with code " +
                           std::to_string(*popen->poll()) +
                           " before it started: its main() must call zmp::init(argc, argv) first");
    }
};

}  // namespace

Starter& spawn_starter() {
    static Starter* made = new SpawnStarter();  // never destroyed: children may start during exit
    return *made;
}

}  // namespace zmp::detail
