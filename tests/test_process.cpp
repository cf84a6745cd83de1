// zmp::Process with the fork start method: Python's semantics, tested with real children.
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

#include "runtime.hpp"
#include "test_util.hpp"
#include "zmp/pipe.hpp"
#include "zmp/process.hpp"

using namespace std::chrono_literals;
using test_util::seconds_since;
using Clock = std::chrono::steady_clock;

namespace {

void sleep_for(double seconds) { std::this_thread::sleep_for(std::chrono::duration<double>(seconds)); }

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

struct Squarer : zmp::Process {
    explicit Squarer(zmp::Connection out, int n) : out_(std::move(out)), n_(n) {}
    void run() override { out_.send(n_ * n_); }
    zmp::Connection out_;
    int n_;
};

}  // namespace

TEST_CASE("a child runs a capturing lambda with its arguments and exits 0") {
    auto [reader, writer] = zmp::Pipe(false);
    std::string captured = "captured";
    zmp::Process p([captured, w = writer](int a, const std::string& b) mutable {
        w.send(std::make_tuple(captured, a, b, zmp::current_process().name()));
    }, 41, std::string("args"));
    CHECK_FALSE(p.is_alive());
    CHECK_FALSE(p.exitcode());
    CHECK_FALSE(p.pid());
    CHECK_FALSE(in_active_children(p));
    p.start();
    writer.close();
    CHECK(p.pid().has_value());
    auto [c, a, b, name] = reader.recv<std::tuple<std::string, int, std::string, std::string>>();
    CHECK(c == "captured");
    CHECK(a == 41);
    CHECK(b == "args");
    CHECK(name == p.name());
    p.join();
    CHECK(p.exitcode() == 0);
    CHECK_FALSE(p.is_alive());
    CHECK_FALSE(in_active_children(p));
}

TEST_CASE("a running child is alive and listed among the active children") {
    auto [reader, writer] = zmp::Pipe(false);
    zmp::Process p([r = reader]() mutable { (void)r.poll(zmp::forever); });  // waits until told
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
    zmp::Process p([] {});
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
    zmp::Process returns([] {});
    zmp::Process exits([] { zmp::exit(7); });
    zmp::Process exits_zero([] { zmp::exit(0); });
    zmp::Process from_thread([] { std::thread([] { zmp::exit(9); }).join(); });
    zmp::Process segfaults([] { ::raise(SIGSEGV); });
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
    zmp::Process p([w = writer]() mutable {
        struct Guard {
            zmp::Connection& out;
            ~Guard() { out.send(std::string("unwound")); }
        } guard{w};
        zmp::exit(4);
    });
    p.start();
    writer.close();
    CHECK(reader.recv<std::string>() == "unwound");
    p.join();
    CHECK(p.exitcode() == 4);
}

TEST_CASE("an uncaught exception exits 1 and prints the process name, type and message on stderr") {
    zmp::Process p({.name = "Thrower"}, [] { throw std::runtime_error("boom at 42"); });
    std::string err = capture_stderr([&] {
        p.start();
        p.join();
    });
    CHECK(p.exitcode() == 1);
    CHECK(err.find("Process Thrower:") != std::string::npos);
    CHECK(err.find("std::runtime_error") != std::string::npos);
    CHECK(err.find("boom at 42") != std::string::npos);

    zmp::Process q([] { throw 17; });
    std::string err2 = capture_stderr([&] {
        q.start();
        q.join();
    });
    CHECK(q.exitcode() == 1);
    CHECK(err2.find("Process " + q.name() + ":") != std::string::npos);
    CHECK(err2.find("int") != std::string::npos);
}

TEST_CASE("terminate gives -15 and kill gives -9 on a sleeping child") {
    zmp::Process t([] { sleep_for(100); });
    zmp::Process k([] { sleep_for(100); });
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
    zmp::Process p([] { sleep_for(100); });
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
    std::vector<zmp::Process> children;
    for (int i = 0; i < 100; ++i) children.emplace_back([] {});
    for (auto& c : children) c.start();
    for (auto& c : children) c.join();
    for (auto& c : children) CHECK(c.exitcode() == 0);
}

TEST_CASE("100 children terminated right after start all report -15") {
    std::vector<zmp::Process> children;
    for (int i = 0; i < 100; ++i) children.emplace_back([] { sleep_for(100); });
    for (auto& c : children) {
        c.start();
        c.terminate();
    }
    for (auto& c : children) c.join();
    for (auto& c : children) CHECK(c.exitcode() == -SIGTERM);
}

TEST_CASE("names: Process-N by default, nested for grandchildren, settable") {
    zmp::Process a([] {});
    zmp::Process b([] {});
    CHECK(a.name().rfind("Process-", 0) == 0);
    CHECK(a.name() != b.name());
    b.set_name("renamed");
    CHECK(b.name() == "renamed");
    CHECK(zmp::current_process().name() == "MainProcess");

    auto [reader, writer] = zmp::Pipe(false);
    zmp::Process parent([w = writer]() mutable {
        zmp::Process grandchild([w]() mutable { w.send(zmp::current_process().name()); });
        grandchild.start();
        grandchild.join();
    });
    parent.start();
    writer.close();
    std::string grandchild_name = reader.recv<std::string>();
    parent.join();
    CHECK(grandchild_name == parent.name() + ":1");
}

TEST_CASE("daemon flag: inherited from the creator unless given, fixed once started") {
    zmp::Process plain([] {});
    CHECK_FALSE(plain.daemon());
    zmp::Process d({.daemon = true}, [] {});
    CHECK(d.daemon());

    auto [reader, writer] = zmp::Pipe(false);
    zmp::Process outer({.daemon = true}, [w = writer]() mutable {
        zmp::Process inner([] {});  // created by a daemon: a daemon too (allowed to exist, unlike Python)
        w.send(std::make_tuple(zmp::current_process().daemon(), inner.daemon()));
    });
    outer.start();
    writer.close();
    auto [outer_daemon, inner_daemon] = reader.recv<std::tuple<bool, bool>>();
    outer.join();
    CHECK(outer_daemon);
    CHECK(inner_daemon);
    CHECK_THROWS_AS(outer.set_daemon(false), zmp::ValueError);
}

TEST_CASE("close: an error while running, afterwards every method errors, twice is fine") {
    zmp::Process p([] { sleep_for(100); });
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
    zmp::Process p({.name = "Kid"}, [w = writer]() mutable {
        auto parent = zmp::parent_process();
        w.send(std::make_tuple(parent.has_value(), parent ? parent->pid() : 0, parent ? parent->name() : "",
                               parent && parent->is_alive(), static_cast<int>(*zmp::current_process().pid()),
                               zmp::current_process().name()));
    });
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

TEST_CASE("a grandchild sees its parent die through parent_process()") {
    auto [reader, writer] = zmp::Pipe(false);
    zmp::Process middle([w = writer]() mutable {
        zmp::Process grandchild([w]() mutable {
            auto parent = zmp::parent_process();
            bool alive_before = parent->is_alive();
            w.send(static_cast<int>(parent->pid()));
            bool ended = parent->join(60s);  // returns when the middle process is killed
            w.send(std::make_tuple(alive_before, ended, parent->is_alive()));
        });
        grandchild.start();
        sleep_for(100);
    });
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
    auto [reader, writer] = zmp::Pipe(false);
    Squarer s(writer, 12);
    s.start();
    writer.close();
    CHECK(reader.recv<int>() == 144);
    s.join();
    CHECK(s.exitcode() == 0);
}

TEST_CASE("a process handle copied into a vector and out of scope still joins its child") {
    std::vector<zmp::Process> kept;
    {
        zmp::Process p([] { sleep_for(0.05); });
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
    zmp::Process p([] { sleep_for(0.1); });
    p.start();
    pollfd fd{p.sentinel(), POLLIN, 0};
    CHECK(::poll(&fd, 1, 0) == 0);
    CHECK(::poll(&fd, 1, 30000) == 1);
    p.join();
    CHECK(p.exitcode() == 0);
}

TEST_CASE("a signal with a handler arriving during join does not break join") {
    struct sigaction action{}, old{};
    action.sa_handler = [](int) {};
    ::sigaction(SIGUSR1, &action, &old);
    zmp::Process p([] { sleep_for(0.3); });
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
    zmp::Process parent([w = writer]() mutable {
        zmp::Process daemon({.daemon = true}, [] { sleep_for(100); });
        daemon.start();
        w.send(static_cast<int>(*daemon.pid()));
        sleep_for(100);
    });
    parent.start();
    writer.close();
    const int daemon_pid = reader.recv<int>();
    const int daemon_fd = zmp::detail::open_pidfd(daemon_pid);
    REQUIRE(daemon_fd >= 0);
    parent.kill();
    parent.join();
    CHECK(zmp::detail::wait_fd_readable(daemon_fd, 30.0));  // the daemon is gone
    ::close(daemon_fd);
}

TEST_CASE("a daemon started from a thread other than main also dies with its parent") {
    auto [reader, writer] = zmp::Pipe(false);
    zmp::Process parent([w = writer]() mutable {
        zmp::Process daemon({.daemon = true}, [] { sleep_for(100); });
        std::thread([&] { daemon.start(); }).join();  // the starting thread is gone now
        w.send(static_cast<int>(*daemon.pid()));
        sleep_for(0.3);
        w.send(daemon.is_alive());
        sleep_for(100);
    });
    parent.start();
    writer.close();
    const int daemon_pid = reader.recv<int>();
    CHECK(reader.recv<bool>());  // the starting thread's end did not kill it
    const int daemon_fd = zmp::detail::open_pidfd(daemon_pid);
    REQUIRE(daemon_fd >= 0);
    parent.kill();
    parent.join();
    CHECK(zmp::detail::wait_fd_readable(daemon_fd, 30.0));
    ::close(daemon_fd);
}

TEST_CASE("a child's exit terminates its daemon children and joins the others") {
    auto [reader, writer] = zmp::Pipe(false);
    zmp::Process parent([w = writer]() mutable {
        zmp::Process daemon({.daemon = true}, [] { sleep_for(100); });
        zmp::Process worker([] { sleep_for(0.3); });
        daemon.start();
        worker.start();
        w.send(std::make_tuple(static_cast<int>(*daemon.pid()), static_cast<int>(*worker.pid())));
        // returning ends this child: the daemon is terminated, the worker joined
    });
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
