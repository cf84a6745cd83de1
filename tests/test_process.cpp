// zmp::Process: Python's semantics, tested with real children under every start method (fork,
// spawn, forkserver). Targets are plain functions with arguments, as they must be to travel.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>
#include <tuple>
#include <vector>

#include "runtime/pidfd.hpp"
#include "test_util.hpp"
#include "zmp/context.hpp"
#include "zmp/pipe.hpp"
#include "zmp/process.hpp"

using namespace std::chrono_literals;
using test_util::seconds_since;
using zmp::Connection;
using zmp::StartMethod;
using Clock = std::chrono::steady_clock;

namespace {

void sleep_for(double seconds) { std::this_thread::sleep_for(std::chrono::duration<double>(seconds)); }

StartMethod any_method() { return GENERATE(StartMethod::fork, StartMethod::spawn, StartMethod::forkserver); }

// Runs `body` with this process's stderr sent to a file, and returns what was written there
// (by this process and by any child started meanwhile).
template <class F>
std::string capture_stderr(F&& body) {
    char path[] = "/tmp/zmp-test-stderr-XXXXXX";
    int file = ::mkstemp(path);
    REQUIRE(file >= 0);
    std::fflush(stderr);
    int saved = ::dup(2);
    ::dup2(file, 2);
    body();
    std::fflush(stderr);
    ::dup2(saved, 2);
    ::close(saved);
    ::close(file);
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    ::unlink(path);
    return text.str();
}

bool in_active_children(const zmp::Process& p) {
    for (const auto& c : zmp::active_children())
        if (c.pid() == p.pid()) return true;
    return false;
}

// ---- targets ----

void report_args(Connection out, int a, std::string b) {
    out.send(
        std::make_tuple(a, b, zmp::current_process().name(), std::string(zmp::to_string(*zmp::get_start_method()))));
}
void wait_until_told(Connection in) { (void)in.poll(zmp::forever); }
void do_nothing() {}
void exit_with(int code) { zmp::exit(code); }
void exit_from_thread(int code) {
    std::thread([code] { zmp::exit(code); }).join();
}
void segfault() { ::raise(SIGSEGV); }
void sleep_long() { sleep_for(100); }
void sleep_short(double seconds) { sleep_for(seconds); }
void throw_runtime_error(std::string what) { throw std::runtime_error(what); }
void throw_int() { throw 17; }

void unwind_then_exit(Connection out, int code) {
    struct Guard {
        Connection& out;
        ~Guard() { out.send(std::string("unwound")); }
    } guard{out};
    zmp::exit(code);
}

void send_name(Connection out) { out.send(zmp::current_process().name()); }

// What this child knows of itself: its ident and the authkey it runs with.
void report_ident_and_authkey(Connection out) {
    const zmp::Authkey& key = zmp::current_process().authkey();
    out.send(std::make_tuple(static_cast<int>(*zmp::current_process().ident()),
                             std::vector<std::uint8_t>(key.begin(), key.end())));
}

void start_grandchild_sending_name(Connection out) {
    zmp::Process grandchild(send_name, out);
    grandchild.start();
    grandchild.join();
}

void report_daemon_flags(Connection out) {
    zmp::Process inner(do_nothing);  // created by a daemon: a daemon too (allowed to exist, unlike Python)
    out.send(std::make_tuple(zmp::current_process().daemon(), inner.daemon()));
}

void report_parent(Connection out) {
    auto parent = zmp::parent_process();
    out.send(std::make_tuple(parent.has_value(), parent ? parent->pid() : 0, parent ? parent->name() : "",
                             parent && parent->is_alive(), static_cast<int>(*zmp::current_process().pid()),
                             zmp::current_process().name()));
}

void watch_parent(Connection out) {
    auto parent = zmp::parent_process();
    bool alive_before = parent->is_alive();
    out.send(static_cast<int>(parent->pid()));
    bool ended = parent->join(60s);  // returns when the middle process is killed
    out.send(std::make_tuple(alive_before, ended, parent->is_alive()));
}

void start_watcher_then_sleep(Connection out) {
    zmp::Process grandchild(watch_parent, out);
    grandchild.start();
    sleep_for(100);
}

void start_daemon_then_sleep(Connection out) {
    zmp::Process daemon({.daemon = true}, sleep_long);
    daemon.start();
    out.send(static_cast<int>(*daemon.pid()));
    sleep_for(100);
}

void start_daemon_from_thread_then_sleep(Connection out) {
    zmp::Process daemon({.daemon = true}, sleep_long);
    std::thread([&] { daemon.start(); }).join();  // the starting thread is gone now
    out.send(static_cast<int>(*daemon.pid()));
    sleep_for(0.3);
    out.send(daemon.is_alive());
    sleep_for(100);
}

void start_daemon_and_worker_then_return(Connection out) {
    zmp::Process daemon({.daemon = true}, sleep_long);
    zmp::Process worker(sleep_short, 0.3);
    daemon.start();
    worker.start();
    out.send(std::make_tuple(static_cast<int>(*daemon.pid()), static_cast<int>(*worker.pid())));
    // returning ends this child: the daemon is terminated, the worker joined
}

}  // namespace

struct Squarer : zmp::Process {
    Squarer() = default;
    Squarer(Connection out, int n) : out_(std::move(out)), n_(n) {}
    void run() override { out_.send(n_ * n_); }
    Connection out_;
    int n_ = 0;
    MSGPACK_DEFINE(out_, n_)
};
ZMP_REGISTER_PROCESS(Squarer);

TEST_CASE("a child runs its target with its arguments and exits 0") {
    const StartMethod method = any_method();
    auto [reader, writer] = zmp::Pipe(false);
    zmp::Process p = zmp::get_context(method).Process(report_args, writer, 41, "args");
    CHECK_FALSE(p.is_alive());
    CHECK_FALSE(p.exitcode());
    CHECK_FALSE(p.pid());
    CHECK_FALSE(in_active_children(p));
    CHECK(p.start_method() == method);
    p.start();
    writer.close();
    CHECK(p.pid().has_value());
    auto [a, b, name, child_method] = reader.recv<std::tuple<int, std::string, std::string, std::string>>();
    CHECK(a == 41);
    CHECK(b == "args");
    CHECK(name == p.name());
    CHECK(child_method == zmp::to_string(method));  // the child reports the method it was started with
    p.join();
    CHECK(p.exitcode() == 0);
    CHECK_FALSE(p.is_alive());
    CHECK_FALSE(in_active_children(p));
}

TEST_CASE("a running child is alive and listed among the active children") {
    const StartMethod method = any_method();
    auto [reader, writer] = zmp::Pipe(false);
    zmp::Process p = zmp::get_context(method).Process(wait_until_told, reader);
    p.start();
    CHECK(p.is_alive());
    CHECK(in_active_children(p));
    CHECK_FALSE(p.exitcode());
    writer.send(1);
    p.join();
    CHECK_FALSE(p.is_alive());
    CHECK_FALSE(in_active_children(p));
}

TEST_CASE("start twice, join before start and join of a non-child are errors") {
    const StartMethod method = any_method();
    zmp::Process p = zmp::get_context(method).Process(do_nothing);
    CHECK_THROWS_AS(p.join(), zmp::ValueError);
    CHECK_THROWS_AS(p.join(0.1s), zmp::ValueError);
    CHECK_THROWS_AS(p.sentinel(), zmp::ValueError);
    p.start();
    CHECK_THROWS_AS(p.start(), zmp::ValueError);
    p.join();
    CHECK_THROWS_AS(p.start(), zmp::ValueError);
    CHECK_THROWS_AS(zmp::current_process().join(), zmp::ValueError);
    CHECK_THROWS_AS(zmp::current_process().start(), zmp::ValueError);
}

TEST_CASE("exit codes: 0 on return, N for zmp::exit(N), 1 for an exception, negative for a signal") {
    const auto ctx = zmp::get_context(any_method());
    zmp::Process returns = ctx.Process(do_nothing);
    zmp::Process exits = ctx.Process(exit_with, 7);
    zmp::Process exits_zero = ctx.Process(exit_with, 0);
    zmp::Process from_thread = ctx.Process(exit_from_thread, 9);
    zmp::Process segfaults = ctx.Process(segfault);
    for (auto* p : {&returns, &exits, &exits_zero, &from_thread, &segfaults}) p->start();
    for (auto* p : {&returns, &exits, &exits_zero, &from_thread, &segfaults}) p->join();
    CHECK(returns.exitcode() == 0);
    CHECK(exits.exitcode() == 7);
    CHECK(exits_zero.exitcode() == 0);
    CHECK(from_thread.exitcode() == 9);
    CHECK(segfaults.exitcode() == -SIGSEGV);
}

TEST_CASE("zmp::exit unwinds the target: destructors run") {
    auto [reader, writer] = zmp::Pipe(false);
    zmp::Process p = zmp::get_context(any_method()).Process(unwind_then_exit, writer, 4);
    p.start();
    writer.close();
    CHECK(reader.recv<std::string>() == "unwound");
    p.join();
    CHECK(p.exitcode() == 4);
}

TEST_CASE("an uncaught exception exits 1 and prints the process name, type and message on stderr") {
    const auto ctx = zmp::get_context(any_method());
    zmp::Process p = ctx.Process({.name = "Thrower"}, throw_runtime_error, "boom at 42");
    std::string err = capture_stderr([&] {
        p.start();
        p.join();
    });
    CHECK(p.exitcode() == 1);
    CHECK(err.find("Process Thrower:") != std::string::npos);
    CHECK(err.find("std::runtime_error") != std::string::npos);
    CHECK(err.find("boom at 42") != std::string::npos);

    zmp::Process q = ctx.Process(throw_int);
    std::string err2 = capture_stderr([&] {
        q.start();
        q.join();
    });
    CHECK(q.exitcode() == 1);
    CHECK(err2.find("Process " + q.name() + ":") != std::string::npos);
    CHECK(err2.find("int") != std::string::npos);
}

TEST_CASE("terminate gives -15 and kill gives -9 on a sleeping child") {
    const auto ctx = zmp::get_context(any_method());
    zmp::Process t = ctx.Process(sleep_long);
    zmp::Process k = ctx.Process(sleep_long);
    t.start();
    k.start();
    CHECK_FALSE(t.join(0s));
    CHECK_FALSE(t.join(-1s));
    t.terminate();
    k.kill();
    t.join();
    k.join();
    CHECK(t.exitcode() == -SIGTERM);
    CHECK(k.exitcode() == -SIGKILL);
    t.terminate();  // already ended: nothing happens
    k.kill();
    CHECK(t.exitcode() == -SIGTERM);
}

TEST_CASE("join(0.1s) on a sleeper returns false after about 0.1 s") {
    zmp::Process p = zmp::get_context(any_method()).Process(sleep_long);
    p.start();
    auto start = Clock::now();
    CHECK_FALSE(p.join(0.1s));
    double waited = seconds_since(start);
    CHECK(waited >= 0.095);
    CHECK(waited < 5.0);
    CHECK(p.is_alive());
    p.kill();
    CHECK(p.join(30s));
    CHECK(p.exitcode() == -SIGKILL);
}

TEST_CASE("100 short children all exit 0") {
    const auto ctx = zmp::get_context(any_method());
    std::vector<zmp::Process> children;
    for (int i = 0; i < 100; ++i) children.push_back(ctx.Process(do_nothing));
    for (auto& c : children) c.start();
    for (auto& c : children) c.join();
    for (auto& c : children) CHECK(c.exitcode() == 0);
}

TEST_CASE("100 children terminated right after start all report -15") {
    const auto ctx = zmp::get_context(any_method());
    std::vector<zmp::Process> children;
    for (int i = 0; i < 100; ++i) children.push_back(ctx.Process(sleep_long));
    for (auto& c : children) {
        c.start();
        c.terminate();
    }
    for (auto& c : children) c.join();
    for (auto& c : children) CHECK(c.exitcode() == -SIGTERM);
}

TEST_CASE("names: Process-N by default, nested for grandchildren, settable") {
    const auto ctx = zmp::get_context(any_method());
    zmp::Process a = ctx.Process(do_nothing);
    zmp::Process b = ctx.Process(do_nothing);
    CHECK(a.name().rfind("Process-", 0) == 0);
    CHECK(a.name() != b.name());
    b.set_name("renamed");
    CHECK(b.name() == "renamed");
    CHECK(zmp::current_process().name() == "MainProcess");

    auto [reader, writer] = zmp::Pipe(false);
    zmp::Process parent = ctx.Process(start_grandchild_sending_name, writer);
    parent.start();
    writer.close();
    std::string grandchild_name = reader.recv<std::string>();
    parent.join();
    CHECK(grandchild_name == parent.name() + ":1");
}

TEST_CASE("daemon flag: inherited from the creator unless given, fixed once started") {
    const auto ctx = zmp::get_context(any_method());
    zmp::Process plain = ctx.Process(do_nothing);
    CHECK_FALSE(plain.daemon());
    zmp::Process d = ctx.Process({.daemon = true}, do_nothing);
    CHECK(d.daemon());

    auto [reader, writer] = zmp::Pipe(false);
    zmp::Process outer = ctx.Process({.daemon = true}, report_daemon_flags, writer);
    outer.start();
    writer.close();
    auto [outer_daemon, inner_daemon] = reader.recv<std::tuple<bool, bool>>();
    outer.join();
    CHECK(outer_daemon);
    CHECK(inner_daemon);
    CHECK_THROWS_AS(outer.set_daemon(false), zmp::ValueError);
}

TEST_CASE("close: an error while running, afterwards every method errors, twice is fine") {
    zmp::Process p = zmp::get_context(any_method()).Process(sleep_long);
    p.start();
    CHECK_THROWS_AS(p.close(), zmp::ValueError);
    p.terminate();
    p.join();
    p.close();
    p.close();
    CHECK_THROWS_AS(p.is_alive(), zmp::ValueError);
    CHECK_THROWS_AS(p.join(), zmp::ValueError);
    CHECK_THROWS_AS(p.terminate(), zmp::ValueError);
    CHECK_THROWS_AS(p.exitcode(), zmp::ValueError);
    CHECK_THROWS_AS(p.name(), zmp::ValueError);
    CHECK_THROWS_AS(p.start(), zmp::ValueError);
}

TEST_CASE("current_process and parent_process describe this process and its parent") {
    CHECK_FALSE(zmp::parent_process());
    CHECK(zmp::current_process().pid() == ::getpid());
    CHECK(zmp::current_process().is_alive());
    CHECK_FALSE(zmp::current_process().exitcode());

    auto [reader, writer] = zmp::Pipe(false);
    zmp::Process p = zmp::get_context(any_method()).Process({.name = "Kid"}, report_parent, writer);
    p.start();
    writer.close();
    auto [has_parent, ppid, pname, palive, mypid, myname] =
        reader.recv<std::tuple<bool, int, std::string, bool, int, std::string>>();
    p.join();
    CHECK(has_parent);
    CHECK(ppid == ::getpid());
    CHECK(pname == "MainProcess");
    CHECK(palive);
    CHECK(mypid == *p.pid());
    CHECK(myname == "Kid");
}

TEST_CASE("ident is the pid, and authkey is the run's key, the same in a child under every method") {
    auto [reader, writer] = zmp::Pipe(false);
    zmp::Process p = zmp::get_context(any_method()).Process(report_ident_and_authkey, writer);
    CHECK_FALSE(p.ident().has_value());  // None before start, as Python
    p.start();
    writer.close();
    auto [ident, key] = reader.recv<std::tuple<int, std::vector<std::uint8_t>>>();
    p.join();
    CHECK(ident == *p.pid());
    CHECK(p.ident() == p.pid());
    const zmp::Authkey& mine = zmp::current_authkey();
    CHECK(key == std::vector<std::uint8_t>(mine.begin(), mine.end()));
    CHECK(p.authkey() == mine);
    CHECK(zmp::current_process().authkey() == mine);
    CHECK(zmp::current_process().ident() == ::getpid());
    p.close();
    CHECK_THROWS_AS(p.authkey(), zmp::ValueError);
}

TEST_CASE("a grandchild sees its parent die through parent_process()") {
    auto [reader, writer] = zmp::Pipe(false);
    zmp::Process middle = zmp::get_context(any_method()).Process(start_watcher_then_sleep, writer);
    middle.start();
    writer.close();
    int middle_pid = reader.recv<int>();
    CHECK(middle_pid == *middle.pid());
    middle.terminate();
    middle.join();
    auto [alive_before, ended, alive_after] = reader.recv<std::tuple<bool, bool, bool>>();
    CHECK(alive_before);
    CHECK(ended);
    CHECK_FALSE(alive_after);
}

TEST_CASE("a subclass overriding run() works as a Process") {
    const StartMethod method = any_method();
    auto [reader, writer] = zmp::Pipe(false);
    Squarer s(writer, 12);
    zmp::set_start_method(method, true);
    s.start();
    CHECK(s.start_method() == method);
    writer.close();
    CHECK(reader.recv<int>() == 144);
    s.join();
    CHECK(s.exitcode() == 0);
}

TEST_CASE("a process handle copied into a vector and out of scope still joins its child") {
    const auto ctx = zmp::get_context(any_method());
    std::vector<zmp::Process> kept;
    {
        zmp::Process p = ctx.Process(sleep_short, 0.05);
        p.start();
        kept.push_back(p);
    }
    kept[0].join();
    CHECK(kept[0].exitcode() == 0);
}

TEST_CASE("cpu_count follows the affinity mask") {
    cpu_set_t set;
    CPU_ZERO(&set);
    REQUIRE(::sched_getaffinity(0, sizeof set, &set) == 0);
    CHECK(zmp::cpu_count() == CPU_COUNT(&set));
    CHECK(zmp::cpu_count() >= 1);
}

TEST_CASE("the sentinel becomes readable when the child ends") {
    zmp::Process p = zmp::get_context(any_method()).Process(sleep_short, 0.1);
    p.start();
    pollfd fd{p.sentinel(), POLLIN, 0};
    CHECK(::poll(&fd, 1, 0) == 0);
    CHECK(::poll(&fd, 1, 30000) == 1);
    p.join();
    CHECK(p.exitcode() == 0);
}

TEST_CASE("a signal with a handler arriving during join does not break join") {
    struct sigaction action {
    }, old{};
    action.sa_handler = [](int) {};
    ::sigaction(SIGUSR1, &action, &old);
    zmp::Process p = zmp::get_context(any_method()).Process(sleep_short, 0.3);
    p.start();
    std::thread poke([] {
        sleep_for(0.1);
        ::kill(::getpid(), SIGUSR1);
    });
    p.join();
    poke.join();
    ::sigaction(SIGUSR1, &old, nullptr);
    CHECK(p.exitcode() == 0);
}

TEST_CASE("a daemon child dies when its parent is SIGKILLed") {
    auto [reader, writer] = zmp::Pipe(false);
    zmp::Process parent = zmp::get_context(any_method()).Process(start_daemon_then_sleep, writer);
    parent.start();
    writer.close();
    const int daemon_pid = reader.recv<int>();
    const int daemon_fd = zmp::detail::open_pidfd(daemon_pid);
    REQUIRE(daemon_fd >= 0);
    parent.kill();
    parent.join();
    CHECK(zmp::detail::wait_fd_readable(daemon_fd,
                                        zmp::detail::Deadline::after(zmp::Seconds(30))));  // the daemon is gone
    ::close(daemon_fd);
}

TEST_CASE("a daemon started from a thread other than main also dies with its parent") {
    auto [reader, writer] = zmp::Pipe(false);
    zmp::Process parent = zmp::get_context(any_method()).Process(start_daemon_from_thread_then_sleep, writer);
    parent.start();
    writer.close();
    const int daemon_pid = reader.recv<int>();
    CHECK(reader.recv<bool>());  // the starting thread's end did not kill it
    const int daemon_fd = zmp::detail::open_pidfd(daemon_pid);
    REQUIRE(daemon_fd >= 0);
    parent.kill();
    parent.join();
    CHECK(zmp::detail::wait_fd_readable(daemon_fd, zmp::detail::Deadline::after(zmp::Seconds(30))));
    ::close(daemon_fd);
}

TEST_CASE("a child's exit terminates its daemon children and joins the others") {
    auto [reader, writer] = zmp::Pipe(false);
    zmp::Process parent = zmp::get_context(any_method()).Process(start_daemon_and_worker_then_return, writer);
    parent.start();
    writer.close();
    auto [daemon_pid, worker_pid] = reader.recv<std::tuple<int, int>>();
    parent.join();
    CHECK(parent.exitcode() == 0);
    CHECK_FALSE(test_util::pid_exists(daemon_pid));
    CHECK_FALSE(test_util::pid_exists(worker_pid));
}

TEST_CASE("non-daemon children are joined when the parent returns from main") {
    char path[] = "/tmp/zmp-test-joined-XXXXXX";
    int fd = ::mkstemp(path);
    REQUIRE(fd >= 0);
    ::close(fd);
    ::unlink(path);
    auto result = test_util::run_command(std::string(HELPER_exit_joins_children) + " " + path);
    CHECK(result.status == 0);
    // The helper's child writes the file 0.3 s after main returned; the helper exits only after.
    std::ifstream in(path);
    std::string content;
    std::getline(in, content);
    CHECK(content == "child finished");
    ::unlink(path);
}

TEST_CASE("under fork any callable works, lambdas with captures included") {
    auto [reader, writer] = zmp::Pipe(false);
    std::string captured = "captured";
    zmp::Process p = zmp::get_context(StartMethod::fork)
                         .Process([captured, w = writer](int a) mutable { w.send(captured + std::to_string(a)); }, 7);
    p.start();
    writer.close();
    CHECK(reader.recv<std::string>() == "captured7");
    p.join();
    CHECK(p.exitcode() == 0);
}

TEST_CASE("every line the main thread prints is written once while a pool forks replacement workers") {
    // The pool's dispatcher thread forks a replacement each time a worker ends, while the main
    // thread fills its stdout buffer (a file: fully buffered). A child that kept a copy of that
    // buffer would write it a second time when it exits.
    char path[] = "/tmp/zmp-test-stdout-XXXXXX";
    const int file = ::mkstemp(path);
    REQUIRE(file >= 0);
    ::close(file);
    const auto result = test_util::run_command(std::string(HELPER_print_while_workers_replaced) + " 60 2>&1 >" + path);
    std::ifstream in(path);
    std::vector<std::string> lines;
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    ::unlink(path);
    REQUIRE(result.status == 0);
    int printed = -1;
    REQUIRE(std::sscanf(result.out.c_str(), "lines %d", &printed) == 1);
    REQUIRE(printed > 0);
    std::size_t misplaced = 0;
    for (std::size_t i = 0; i < lines.size(); ++i)
        if (lines[i] != "line " + std::to_string(i)) ++misplaced;
    CHECK(lines.size() == static_cast<std::size_t>(printed));
    CHECK(misplaced == 0);
}
