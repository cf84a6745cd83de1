#include "runtime/identity.hpp"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <thread>
#include <utility>

#include "runtime/hooks.hpp"
#include "runtime/pidfd.hpp"
#include "runtime/process_global.hpp"
#include "runtime/startup.hpp"

namespace zmp::detail {

ThisProcess& this_process() { return process_global<ThisProcess>(); }

ThisProcess::ThisProcess() : pid_(::getpid()) {
    require_init();
    arm_exit_hooks();
}

void ThisProcess::after_fork_child() {
    pid_ = ::getpid();
    // The parent opened a pidfd on itself before forking: to this child it is the parent's.
    inherited_pidfd_ = std::exchange(self_pidfd_, -1);
}

std::vector<int> ThisProcess::next_child_identity() {
    std::lock_guard lock(mutex_);
    std::vector<int> id = identity_;
    id.push_back(++child_counter_);
    return id;
}

bool ThisProcess::on_main_thread() const { return static_cast<pid_t>(::syscall(SYS_gettid)) == pid_; }

int ThisProcess::self_pidfd() {
    std::lock_guard lock(mutex_);
    if (self_pidfd_ < 0) self_pidfd_ = open_pidfd(pid_);
    return self_pidfd_;
}

void ThisProcess::become_child(const ChildIdentity& who) {
    name_ = who.name;
    daemon_ = who.daemon;
    identity_ = who.identity;
    child_counter_ = 0;
    is_child_ = true;
    parent_pid_ = who.parent_pid;
    parent_name_ = who.parent_name;
    parent_pidfd_ = inherited_pidfd_;

    if (daemon_) {
        // A daemon dies with its parent, even when the parent is SIGKILLed. PDEATHSIG fires when
        // the thread that made this process ends, so it serves only when that was the parent's
        // main thread and the parent is this process's parent in the kernel's eyes too (not so
        // for a child of the fork server); otherwise a thread watches the parent's pidfd.
        if (who.parent_forked_from_main_thread && ::getppid() == who.parent_pid) {
            ::prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (::getppid() != who.parent_pid) ::_exit(1);  // it died before prctl took effect
        } else if (parent_pidfd_ >= 0) {
            // std::thread allocates, but a daemon pays that once; ordinary children do not.
            std::thread([fd = parent_pidfd_] {
                wait_fd_readable(fd, Deadline::never());
                ::kill(::getpid(), SIGKILL);
            }).detach();
        } else {
            ::_exit(1);  // the parent is already gone
        }
    }
}

}  // namespace zmp::detail
