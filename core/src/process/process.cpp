#include "zmp/process.hpp"

#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cxxabi.h>
#include <cstring>
#include <iostream>
#include <ostream>

#include "process/bootstrap.hpp"
#include "process/context_state.hpp"
#include "process/forkserver.hpp"
#include "process/process_state.hpp"
#include "runtime/runtime.hpp"
#include "zmp/transport/codec.hpp"

namespace zmp {
namespace detail {
namespace {

// Runs the target the way Python's _bootstrap does and returns the exit code.
int run_target(Process& process) {
    Runtime::instance().set_target_thread(true);
    try {
        process.run();
        return 0;
    } catch (const SystemExit& e) {
        return e.code;
    } catch (const std::exception& e) {
        std::cout.flush();
        std::fflush(stdout);
        std::fprintf(stderr, "Process %s:\n%s: %s\n", Runtime::instance().name().c_str(),
                     transport::type_name(typeid(e)).c_str(), e.what());
        return 1;
    } catch (...) {
        const std::type_info* type = abi::__cxa_current_exception_type();
        std::fprintf(stderr, "Process %s:\n%s\n", Runtime::instance().name().c_str(),
                     type ? transport::type_name(*type).c_str() : "unknown exception");
        return 1;
    }
}

}  // namespace

void ProcessAccess::set_local_target(Process& process, std::function<void()> target) {
    process.state().target = std::move(target);
}

[[noreturn]] void ProcessAccess::run_child(Process& process) { Runtime::instance().exit_child(run_target(process)); }

bool ProcessAccess::on_main_thread() { return static_cast<pid_t>(::syscall(SYS_gettid)) == Runtime::instance().pid(); }

int exitcode_from_status(int status) {
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return -WTERMSIG(status);
    return 1;
}

WaitpidPopen::WaitpidPopen(pid_t pid) : pid_(pid), pidfd_(open_pidfd(pid)) {}

WaitpidPopen::~WaitpidPopen() {
    if (pidfd_ >= 0) ::close(pidfd_);
}

std::optional<int> WaitpidPopen::poll() {
    if (exitcode_) return exitcode_;
    int status = 0;
    pid_t rc;
    do {
        rc = ::waitpid(pid_, &status, WNOHANG);
    } while (rc < 0 && errno == EINTR);
    if (rc == pid_)
        exitcode_ = exitcode_from_status(status);
    else if (rc < 0)
        throw_os_error("waitpid", errno);
    return exitcode_;
}

void WaitpidPopen::send_signal(int signal) {
    if (exitcode_) return;
    // Through the pidfd, so that a recycled pid can never receive it.
    if (::syscall(SYS_pidfd_send_signal, pidfd_, signal, nullptr, 0) != 0 && errno != ESRCH) {
        throw_os_error("pidfd_send_signal", errno);
    }
}

std::optional<int> ProcessState::poll_locked() {
    if (!exitcode && popen) exitcode = popen->poll();
    return exitcode;
}

}  // namespace detail

using detail::ProcessState;
using detail::Runtime;

namespace {

ProcessState& checked_open(ProcessState& st) {
    if (st.closed) throw ValueError("process object is closed");
    return st;
}

// Parent-side checks shared by join(), is_alive() and the signals.
void require_child_of_caller(const ProcessState& st, const char* what) {
    if (st.role == ProcessState::Role::current) throw ValueError(std::string("can only ") + what + " a child process");
    if (st.creator != Runtime::instance().pid()) throw ValueError(std::string("can only ") + what + " a child process");
}

}  // namespace

Process::Process() : Process(ProcessOptions{}) {}

Process::Process(ProcessOptions options) : state_(std::make_shared<ProcessState>()) {
    Runtime& rt = Runtime::instance();
    ProcessState& st = *state_;
    st.creator = rt.pid();
    st.identity = rt.next_child_identity();
    if (options.name.empty()) {
        st.name = "Process-";
        for (std::size_t i = 0; i < st.identity.size(); ++i) {
            if (i > 0) st.name += ':';
            st.name += std::to_string(st.identity[i]);
        }
    } else {
        st.name = std::move(options.name);
    }
    st.daemon = options.daemon.value_or(rt.daemon());
    st.method = options.method;
}

Process::~Process() = default;

ProcessState& Process::state() const {
    if (!state_) throw ValueError("process object has been moved from");
    return *state_;
}

void Process::set_target(detail::TravelTarget travel, std::function<void()> target) {
    state().travel = std::move(travel);
    state().target = std::move(target);
}

StartMethod Process::start_method() const {
    const ProcessState& st = checked_open(state());
    if (st.method) return *st.method;
    return detail::peek_default_start_method().value_or(StartMethod::fork);
}

void Process::run() {
    if (state_ && state_->target) state_->target();
}

void Process::start() {
    ProcessState& st = state();
    std::unique_lock lock(st.mutex);
    checked_open(st);
    if (st.popen || st.role == ProcessState::Role::current) throw ValueError("cannot start a process twice");
    Runtime& rt = Runtime::instance();
    if (st.creator != rt.pid()) throw ValueError("can only start a process object created by current process");

    for (const auto& child : rt.children()) {  // reap children that have ended, as Python's start() does
        if (child.get() == &st) continue;
        std::lock_guard child_lock(child->mutex);
        if (child->poll_locked()) rt.forget_child(child.get());
    }
    rt.run_start_hooks();   // services children rely on (the broker) are up before the first one
    (void)rt.run_dir();     // children inherit the run directory; only the root makes it
    (void)rt.self_pidfd();  // and a pidfd on this process, their parent
    const StartMethod method = st.method ? *st.method : detail::use_default_start_method();

    if (method == StartMethod::spawn) {
        st.popen = detail::spawn_start(st, *this);
    } else if (method == StartMethod::forkserver) {
        st.popen = detail::forkserver_start(st, *this);
    } else {
        detail::ChildIdentity who{st.name,  st.daemon, st.identity,
                                  rt.pid(), rt.name(), detail::ProcessAccess::on_main_thread()};
        detail::flush_std_streams();  // or buffered output would be written twice, once by each process
        const pid_t pid = ::fork();
        if (pid < 0) throw_os_error("fork", errno);
        if (pid == 0) {
            rt.become_child(who);
            detail::adopt_start_method(StartMethod::fork);
            detail::ProcessAccess::run_child(*this);
        }
        st.popen = std::make_unique<detail::WaitpidPopen>(pid);
    }
    st.target = nullptr;  // the parent keeps no reference to the target (bpo-30775)
    st.travel = {};
    lock.unlock();
    rt.add_child(state_);
}

namespace {

// Python's join(): wait for the child to end (its sentinel becomes readable), then forget it.
bool join_until(ProcessState& st, const detail::Deadline& deadline) {
    for (;;) {
        int sentinel;
        {
            std::lock_guard lock(st.mutex);
            if (!st.popen) throw ValueError("can only join a started process");
            if (st.poll_locked()) break;
            sentinel = st.popen->sentinel();  // may change (a fork server that went away)
        }
        if (!detail::wait_fd_readable(sentinel, deadline)) return false;
    }
    Runtime::instance().forget_child(&st);
    return true;
}

}  // namespace

void Process::join() {
    ProcessState& st = checked_open(state());
    require_child_of_caller(st, "join");
    (void)join_until(st, detail::Deadline::never());
}

bool Process::join(Seconds timeout) {
    ProcessState& st = checked_open(state());
    require_child_of_caller(st, "join");
    return join_until(st, detail::Deadline::after(timeout));
}

bool Process::is_alive() const {
    ProcessState& st = checked_open(state());
    if (st.role == ProcessState::Role::current) return true;
    require_child_of_caller(st, "test");
    std::lock_guard lock(st.mutex);
    if (!st.popen) return false;
    return !st.poll_locked();
}

void Process::terminate() {
    ProcessState& st = checked_open(state());
    require_child_of_caller(st, "terminate");
    std::lock_guard lock(st.mutex);
    if (!st.popen) throw ValueError("can only terminate a started process");
    if (!st.exitcode) st.popen->send_signal(SIGTERM);
}

void Process::kill() {
    ProcessState& st = checked_open(state());
    require_child_of_caller(st, "kill");
    std::lock_guard lock(st.mutex);
    if (!st.popen) throw ValueError("can only kill a started process");
    if (!st.exitcode) st.popen->send_signal(SIGKILL);
}

std::optional<int> Process::exitcode() const {
    ProcessState& st = checked_open(state());
    if (st.role == ProcessState::Role::current || st.creator != Runtime::instance().pid()) return std::nullopt;
    std::lock_guard lock(st.mutex);
    return st.poll_locked();
}

std::optional<pid_t> Process::pid() const {
    ProcessState& st = checked_open(state());
    if (st.role == ProcessState::Role::current) return Runtime::instance().pid();
    std::lock_guard lock(st.mutex);
    if (!st.popen) return std::nullopt;
    return st.popen->pid();
}

const std::string& Process::name() const { return checked_open(state()).name; }

void Process::set_name(std::string name) {
    ProcessState& st = checked_open(state());
    std::lock_guard lock(st.mutex);
    st.name = std::move(name);
}

bool Process::daemon() const { return checked_open(state()).daemon; }

void Process::set_daemon(bool daemon) {
    ProcessState& st = checked_open(state());
    std::lock_guard lock(st.mutex);
    if (st.popen || st.role == ProcessState::Role::current) throw ValueError("process has already started");
    st.daemon = daemon;
}

int Process::sentinel() const {
    ProcessState& st = checked_open(state());
    std::lock_guard lock(st.mutex);
    if (!st.popen) throw ValueError("process not started");
    return st.popen->sentinel();
}

void Process::close() {
    ProcessState& st = state();
    std::lock_guard lock(st.mutex);
    if (st.closed) return;
    if (st.popen) {
        if (!st.poll_locked()) {
            throw ValueError(
                "Cannot close a process while it is still running. You should first call join() or terminate().");
        }
        st.popen.reset();
    }
    st.closed = true;
    st.target = nullptr;
    Runtime::instance().forget_child(&st);
}

std::ostream& operator<<(std::ostream& out, const Process& process) {
    const ProcessState& st = checked_open(process.state());
    out << "<" << (st.role == ProcessState::Role::current ? "_MainProcess" : "Process") << " name='" << st.name << "'";
    if (st.role == ProcessState::Role::current) return out << " started>";
    std::optional<int> code;
    std::optional<pid_t> pid;
    {
        std::lock_guard lock(st.mutex);
        if (st.popen) {
            pid = st.popen->pid();
            if (st.creator == Runtime::instance().pid()) code = const_cast<ProcessState&>(st).poll_locked();
        }
    }
    if (pid) out << " pid=" << *pid;
    out << " parent=" << st.creator;
    if (!pid)
        out << " initial";
    else if (!code)
        out << " started";
    else if (*code < 0)
        out << " stopped exitcode=-SIG" << (sigabbrev_np(-*code) ? sigabbrev_np(-*code) : "?");
    else
        out << " stopped exitcode=" << *code;
    if (st.daemon) out << " daemon";
    return out << ">";
}

bool ParentProcess::is_alive() const {
    if (pidfd_ < 0) return false;
    return !detail::wait_fd_readable(pidfd_, detail::Deadline::now());
}

bool ParentProcess::join(Timeout timeout) const {
    if (pidfd_ < 0) return true;
    return detail::wait_fd_readable(pidfd_, detail::Deadline::after(timeout));
}

Process& current_process() {
    // One handle per process; rebuilt when a forked child takes on its own identity.
    thread_local std::pair<const ProcessState*, Process> cached{nullptr, Process(std::shared_ptr<ProcessState>())};
    const auto& state = Runtime::instance().current_state();
    if (cached.first != state.get()) cached = {state.get(), Process(state)};
    return cached.second;
}

std::optional<ParentProcess> parent_process() {
    Runtime& rt = Runtime::instance();
    if (!rt.is_child()) return std::nullopt;
    return ParentProcess(rt.parent_pid(), rt.parent_name(), rt.parent_pidfd());
}

std::vector<Process> active_children() {
    Runtime& rt = Runtime::instance();
    std::vector<Process> alive;
    for (const auto& child : rt.children()) {
        std::unique_lock lock(child->mutex);
        if (child->poll_locked()) {
            lock.unlock();
            rt.forget_child(child.get());
        } else {
            alive.emplace_back(child);
        }
    }
    return alive;
}

int cpu_count() {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (::sched_getaffinity(0, sizeof set, &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0) return n;
    }
    long n = ::sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? static_cast<int>(n) : 1;
}

[[noreturn]] void exit(int code) {
    Runtime& rt = Runtime::instance();
    if (rt.on_target_thread()) throw detail::SystemExit{code};
    if (rt.is_child()) rt.exit_child(code);
    std::exit(code);
}

}  // namespace zmp
