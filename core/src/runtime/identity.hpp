#pragma once
// Who this process is: its name, pid, daemon flag and identity tuple (Python's _identity), and its
// parent. A forked child keeps its parent's values until become_child() gives it its own; the pid
// is kept right across fork() by a fork handler.
//
//     this_process().pid();            // cheaper than getpid()
//     this_process().name();           // "MainProcess", "Process-1", "Process-1:2"...

#include <sys/types.h>

#include <mutex>
#include <string>
#include <vector>

namespace zmp::detail {

/// What a new child needs to become itself; filled in by the parent before the child starts.
struct ChildIdentity {
    std::string name;
    bool daemon = false;
    std::vector<int> identity;  // Python's _identity tuple: (1,), (1, 2), ...
    pid_t parent_pid = 0;
    std::string parent_name;
    bool parent_forked_from_main_thread = true;
};

class ThisProcess {
public:
    const std::string& name() const { return name_; }
    /// This process's pid, kept up to date across fork() (cheaper than the getpid syscall).
    pid_t pid() const { return pid_; }
    bool daemon() const { return daemon_; }
    /// True in a process started by zmp (as opposed to the root).
    bool is_child() const { return is_child_; }
    const std::vector<int>& identity() const { return identity_; }
    /// The next child's identity tuple: this one's with the next child number appended.
    std::vector<int> next_child_identity();
    /// True on the main thread of this process.
    bool on_main_thread() const;

    pid_t parent_pid() const { return parent_pid_; }
    const std::string& parent_name() const { return parent_name_; }
    /// A pidfd on the parent (-1 in the root), owned here and never closed.
    int parent_pidfd() const { return parent_pidfd_; }
    /// A pidfd on this process, opened once; a forked child inherits it as its parent's pidfd.
    int self_pidfd();
    /// The parent's pidfd, for a child whose parent passed one explicitly (spawn, forkserver).
    void set_inherited_parent_pidfd(int fd) { inherited_pidfd_ = fd; }

    /// Called in a freshly started child (forked, or rebuilt by spawn or the fork server) to take
    /// on its identity. A daemon arranges to die with its parent.
    void become_child(const ChildIdentity& who);

    /// Made once per process, by this_process() (runtime/process_global.hpp).
    ThisProcess();
    ThisProcess(const ThisProcess&) = delete;
    ThisProcess& operator=(const ThisProcess&) = delete;
    std::mutex& fork_mutex() { return mutex_; }
    /// In a forked child: the new pid, and the parent's pidfd on itself as this child's parent pidfd.
    void after_fork_child();

private:
    std::mutex mutex_;  // the child counter and self_pidfd_
    std::string name_ = "MainProcess";
    pid_t pid_;
    bool daemon_ = false;
    bool is_child_ = false;
    std::vector<int> identity_;
    int child_counter_ = 0;
    pid_t parent_pid_ = 0;
    std::string parent_name_;
    int parent_pidfd_ = -1;
    int self_pidfd_ = -1;
    int inherited_pidfd_ = -1;  // the parent's self_pidfd_, as this child inherited it
};

/// This process, made on first use (never destroyed).
ThisProcess& this_process();

}  // namespace zmp::detail
