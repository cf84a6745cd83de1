#include "zmp/process.hpp"

#include <sched.h>
#include <signal.h>
#include <unistd.h>

#include <cstring>
#include <mutex>
#include <ostream>

#include "process/child.hpp"
#include "process/default_start_method.hpp"
#include "process/process_state.hpp"
#include "process/starter.hpp"
#include "runtime/children.hpp"
#include "runtime/exit.hpp"
#include "runtime/hooks.hpp"
#include "runtime/identity.hpp"
#include "runtime/pidfd.hpp"
#include "runtime/process_global.hpp"
#include "runtime/run.hpp"
#include "runtime/run_directory.hpp"

namespace zmp {
namespace detail {

void ProcessAccess::set_local_target(Process& process, std::function<void()> target) {
    process.state().target = std::move(target);
}

std::optional<int> ProcessState::poll_locked() {
    if (!exitcode && popen) exitcode = popen->poll();
    return exitcode;
}

}  // namespace detail

using detail::ProcessState;

namespace {

ProcessState& checked_open(ProcessState& st) {
    if (st.closed) throw ValueError("process object is closed");
    return st;
}

// Parent-side checks shared by join(), is_alive() and the signals.
void require_child_of_caller(const ProcessState& st, const char* what) {
    if (st.role == ProcessState::Role::current || st.creator != detail::this_process().pid()) {
        throw ValueError(std::string("can only ") + what + " a child process");
    }
}

// terminate() and kill(): `signal` to a started child that has not ended; `what` names the call.
void signal_child(ProcessState& st, int signal, const char* what) {
    require_child_of_caller(st, what);
    std::lock_guard lock(st.mutex);
    if (!st.popen) throw ValueError(std::string("can only ") + what + " a started process");
    if (!st.exitcode) st.popen->send_signal(signal);
}

}  // namespace

Process::Process() : Process(ProcessOptions{}) {}

Process::Process(ProcessOptions options) : state_(std::make_shared<ProcessState>()) {
    detail::ThisProcess& me = detail::this_process();
    ProcessState& st = *state_;
    st.creator = me.pid();
    st.identity = me.next_child_identity();
    if (options.name.empty()) {
        st.name = "Process-";
        for (std::size_t i = 0; i < st.identity.size(); ++i) {
            if (i > 0) st.name += ':';
            st.name += std::to_string(st.identity[i]);
        }
    } else {
        st.name = std::move(options.name);
    }
    st.daemon = options.daemon.value_or(me.daemon());
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
    detail::ThisProcess& me = detail::this_process();
    if (st.creator != me.pid()) throw ValueError("can only start a process object created by current process");

    for (const auto& tracked : detail::children()) {  // reap children that have ended, as Python's start() does
        if (tracked.get() == &st) continue;
        auto& child = static_cast<ProcessState&>(*tracked);  // the process component tracks only these
        std::lock_guard child_lock(child.mutex);
        if (child.poll_locked()) detail::forget_child(&child);
    }
    detail::run_start_hooks();             // services children rely on (the broker) are up before the first one
    (void)detail::this_run();              // the run (root, authkey) is settled before any child copies it
    (void)detail::run_directory().path();  // children inherit the run directory; only the root makes it
    (void)me.self_pidfd();                 // and a pidfd on this process, their parent
    const StartMethod method = st.method ? *st.method : detail::use_default_start_method();
    st.popen = detail::starter_for(method).start(st, *this);
    // As in Python, the parent keeps no reference to the target (docs/design.md, Upstream behaviour
    // zmp works around).
    st.target = nullptr;
    st.travel = {};
    lock.unlock();
    detail::add_child(state_);
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
    detail::forget_child(&st);
    return true;
}

}  // namespace

namespace detail {

// This process's exit path sees its children through TrackedChild.
bool ProcessState::is_alive() {
    std::lock_guard lock(mutex);
    return popen && !poll_locked();
}

void ProcessState::terminate() {
    std::lock_guard lock(mutex);
    if (popen && !exitcode) popen->send_signal(SIGTERM);
}

void ProcessState::join() { (void)join_until(*this, Deadline::never()); }

std::string ProcessState::describe() const {
    std::lock_guard lock(mutex);
    return name + " (pid " + (popen ? std::to_string(popen->pid()) : std::string("none")) + ")";
}

}  // namespace detail

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

void Process::terminate() { signal_child(checked_open(state()), SIGTERM, "terminate"); }

void Process::kill() { signal_child(checked_open(state()), SIGKILL, "kill"); }

std::optional<int> Process::exitcode() const {
    ProcessState& st = checked_open(state());
    if (st.role == ProcessState::Role::current || st.creator != detail::this_process().pid()) return std::nullopt;
    std::lock_guard lock(st.mutex);
    return st.poll_locked();
}

const Authkey& Process::authkey() const {
    (void)checked_open(state());
    return current_authkey();
}

std::optional<pid_t> Process::pid() const {
    ProcessState& st = checked_open(state());
    if (st.role == ProcessState::Role::current) return detail::this_process().pid();
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
    detail::forget_child(&st);
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
            if (st.creator == detail::this_process().pid()) code = const_cast<ProcessState&>(st).poll_locked();
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

namespace {

// The state behind current_process(), made on first use in each process: a forked child (a new
// pid) makes its own once it has taken on its identity.
// Its mutex is held across fork().
struct CurrentState {
    std::mutex mutex;
    std::shared_ptr<ProcessState> state;
    pid_t made_for = 0;
};

const std::shared_ptr<ProcessState>& current_state() {
    detail::ThisProcess& me = detail::this_process();
    CurrentState* current = &detail::process_global<CurrentState, detail::ForkLayer::service>();
    std::lock_guard lock(current->mutex);
    if (!current->state || current->made_for != me.pid()) {
        auto state = std::make_shared<ProcessState>();
        state->role = ProcessState::Role::current;
        state->creator = me.pid();
        state->name = me.name();
        state->daemon = me.daemon();
        state->identity = me.identity();
        current->state = std::move(state);
        current->made_for = me.pid();
    }
    return current->state;
}

}  // namespace

Process& current_process() {
    // One handle per process; rebuilt when a forked child takes on its own identity.
    thread_local std::pair<const ProcessState*, Process> cached{nullptr, Process(std::shared_ptr<ProcessState>())};
    const auto& state = current_state();
    if (cached.first != state.get()) cached = {state.get(), Process(state)};
    return cached.second;
}

std::optional<ParentProcess> parent_process() {
    detail::ThisProcess& me = detail::this_process();
    if (!me.is_child()) return std::nullopt;
    return ParentProcess(me.parent_pid(), me.parent_name(), me.parent_pidfd());
}

std::vector<Process> active_children() {
    std::vector<Process> alive;
    for (const auto& tracked : detail::children()) {
        auto child = std::static_pointer_cast<ProcessState>(tracked);  // the process component tracks only these
        std::unique_lock lock(child->mutex);
        if (child->poll_locked()) {
            lock.unlock();
            detail::forget_child(child.get());
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
    if (detail::on_target_thread()) throw detail::SystemExit{code};
    if (detail::this_process().is_child()) detail::exit_child(code);
    std::exit(code);
}

}  // namespace zmp
