// Start methods and contexts: spawn and forkserver beside fork, function identity, the default
// method, and what happens when a target cannot travel or zmp::init() is missing.
#include <catch2/catch.hpp>

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <sstream>
#include <string>
#include <thread>

#include "process/forkserver.hpp"
#include "zmp/authkey.hpp"
#include "runtime/pidfd.hpp"
#include "test_util.hpp"
#include "zmp/context.hpp"
#include "zmp/pipe.hpp"
#include "zmp/pool.hpp"
#include "zmp/process.hpp"
#include "zmp/sharedctypes.hpp"
#include "zmp/sync.hpp"

using namespace std::chrono_literals;
using zmp::Connection;
using zmp::StartMethod;

namespace {

StartMethod any_method() { return GENERATE(StartMethod::fork, StartMethod::spawn, StartMethod::forkserver); }

// Python's test_recursion: every node sends its path, then starts and joins its two children.
void report_path(Connection out, std::vector<int> path) {
    out.send(path);
    if (path.size() < 2) {
        for (int i = 0; i < 2; ++i) {
            std::vector<int> child_path = path;
            child_path.push_back(i);
            zmp::Process child(report_path, out, child_path);
            child.start();
            child.join();
        }
    }
}

std::set<int> open_fds() {
    std::set<int> fds;
    DIR* dir = ::opendir("/proc/self/fd");
    while (dirent* entry = ::readdir(dir)) {
        if (entry->d_name[0] != '.') fds.insert(std::atoi(entry->d_name));
    }
    fds.erase(::dirfd(dir));
    ::closedir(dir);
    return fds;
}

// What descriptor `fd` is in this process (empty if none), and how many are open.
void report_fd(Connection out, int fd, Connection go) {
    (void)go.recv<int>();  // both siblings run at once before they report
    char target[256] = {};
    const std::string link = "/proc/self/fd/" + std::to_string(fd);
    const ssize_t n = ::readlink(link.c_str(), target, sizeof target - 1);
    out.send(std::make_tuple(std::string(target, n > 0 ? static_cast<std::size_t>(n) : 0),
                             static_cast<int>(open_fds().size())));
}

int global_value = 0;
void report_global(Connection out) { out.send(global_value); }

void registered_target(Connection out, std::string text) { out.send(text + " by name"); }
ZMP_REGISTER(registered_target);

void say_hello(Connection out) { out.send(std::string("hello")); }

struct Unregistered : zmp::Process {
    void run() override {}
};

struct NotPackable {
    int x = 0;
};
void takes_not_packable(NotPackable) {}

// A child that uses what its context made: the lock and the values under it, the semaphore, the
// barrier, the condition and the event that says it is done.
void use_context_objects(zmp::Lock lock, zmp::RLock rlock, zmp::BoundedSemaphore sem, zmp::Barrier barrier,
                         zmp::Condition cond, zmp::Event done, zmp::Value<int> value, zmp::Array<int> array) {
    {
        std::lock_guard guard(lock);
        std::lock_guard twice(rlock);
        std::lock_guard again(rlock);  // recursive
        value.set(value.value() + 41);
        array.set(2, 30);
    }
    if (!sem.acquire(30.0s)) zmp::exit(3);  // the parent checks the exit code
    (void)barrier.wait(60.0s);              // the parent is there too
    {
        std::lock_guard guard(cond);
        cond.notify_all();
    }
    sem.release();
    done.set();
}

std::string pool_worker_name(int) { return zmp::current_process().name(); }

}  // namespace

TEST_CASE("a context makes Pools, locks, semaphores, events, conditions, barriers, values, arrays") {
    const StartMethod method = any_method();
    auto ctx = zmp::get_context(method);

    zmp::Pool pool = ctx.Pool(2);
    CHECK(pool.processes() == 2);
    const std::string prefix = method == StartMethod::spawn        ? "SpawnPoolWorker-"
                               : method == StartMethod::forkserver ? "ForkServerPoolWorker-"
                                                                   : "ForkPoolWorker-";
    CHECK(pool.apply(pool_worker_name, 0).rfind(prefix, 0) == 0);  // its workers use the context's method
    CHECK_THROWS_AS(ctx.Pool(0), zmp::ValueError);

    auto lock = ctx.Lock();
    auto rlock = ctx.RLock();
    auto sem = ctx.BoundedSemaphore(1);
    auto barrier = ctx.Barrier(2);
    auto cond = ctx.Condition(ctx.RLock());
    auto done = ctx.Event();
    auto value = ctx.Value<int>(1);
    auto array = ctx.Array<int>({1, 2, 3});
    auto raw = ctx.RawArray<int>(4);
    CHECK(raw.size() == 4);
    CHECK(ctx.Semaphore(3).get_value() == 3);

    zmp::Process child = ctx.Process(use_context_objects, lock, rlock, sem, barrier, cond, done, value, array);
    child.start();
    (void)barrier.wait(60.0s);
    REQUIRE(done.wait(60.0s));
    child.join();
    CHECK(child.exitcode() == 0);
    CHECK(value.value() == 42);
    CHECK(array.get(2) == 30);
    CHECK(sem.get_value() == 1);
    CHECK_THROWS_AS(sem.release(), zmp::ValueError);  // bounded
}

TEST_CASE("contexts: by name and by enum, the method they report, errors for unknown names") {
    CHECK(zmp::get_context("spawn").method() == StartMethod::spawn);
    CHECK(zmp::get_context(StartMethod::forkserver).get_start_method() == "forkserver");
    CHECK(zmp::get_context("fork").get_start_method() == "fork");
    try {
        (void)zmp::get_context("threads");
        FAIL("no error");
    } catch (const zmp::ValueError& e) {
        CHECK(std::string(e.what()) == "cannot find context for 'threads'");
    }
    CHECK(zmp::get_all_start_methods() ==
          std::vector<StartMethod>{StartMethod::fork, StartMethod::spawn, StartMethod::forkserver});
}

TEST_CASE("the default start method is fork, set once, forced to change, reset with force") {
    CHECK_FALSE(zmp::get_start_method(true).has_value());  // nothing chosen yet
    zmp::set_start_method("spawn");
    CHECK(zmp::get_start_method() == StartMethod::spawn);
    CHECK_THROWS_AS(zmp::set_start_method(StartMethod::fork), zmp::RuntimeError);
    zmp::set_start_method(StartMethod::forkserver, true);
    CHECK(zmp::get_context().method() == StartMethod::forkserver);
    zmp::set_start_method(std::nullopt, true);
    CHECK_FALSE(zmp::get_start_method(true).has_value());
    CHECK(zmp::get_start_method() == StartMethod::fork);  // asking fixes the platform default
    CHECK_THROWS_AS(zmp::set_start_method(StartMethod::spawn), zmp::RuntimeError);
}

TEST_CASE("a process started with the default method fixes the default") {
    zmp::Process p([] {});
    p.start();
    p.join();
    CHECK(p.start_method() == StartMethod::fork);
    CHECK_THROWS_AS(zmp::set_start_method(StartMethod::spawn), zmp::RuntimeError);
}

TEST_CASE("a process tree of depth 2 and fan-out 2 reports exactly its 7 paths") {
    const StartMethod method = any_method();
    zmp::set_start_method(method, true);  // the children start theirs with the same method
    auto [reader, writer] = zmp::Pipe(false);
    zmp::Process root(report_path, writer, std::vector<int>{});
    root.start();
    writer.close();
    std::vector<std::vector<int>> paths;
    try {
        for (;;) paths.push_back(reader.recv<std::vector<int>>());
    } catch (const zmp::EOFError&) {
    }
    root.join();
    CHECK(root.exitcode() == 0);
    CHECK(paths == std::vector<std::vector<int>>{{}, {0}, {0, 0}, {0, 1}, {1}, {1, 0}, {1, 1}});
}

TEST_CASE("descriptors opened by the parent do not leak into spawn and forkserver children") {
    const StartMethod method = any_method();
    char path[] = "/tmp/zmp-test-leaky-XXXXXX";
    const int leaky = ::mkstemp(path);  // no O_CLOEXEC on purpose
    REQUIRE(leaky >= 0);
    auto [reader, writer] = zmp::Pipe(false);
    auto [go_first, tell_first] = zmp::Pipe(false);  // one each: readers of one end must take turns
    auto [go_second, tell_second] = zmp::Pipe(false);
    auto ctx = zmp::get_context(method);
    zmp::Process first = ctx.Process(report_fd, writer, leaky, go_first);
    zmp::Process second = ctx.Process(report_fd, writer, leaky, go_second);
    first.start();
    second.start();
    writer.close();
    tell_first.send(1);
    tell_second.send(1);
    auto [seen_by_first, count_first] = reader.recv<std::tuple<std::string, int>>();
    auto [seen_by_second, count_second] = reader.recv<std::tuple<std::string, int>>();
    first.join();
    second.join();
    ::close(leaky);
    ::unlink(path);
    if (method == StartMethod::fork) {
        CHECK(seen_by_first == path);  // a forked child is a copy, descriptors included (as in Python)
    } else {
        CHECK(seen_by_first != path);
        CHECK(seen_by_second != path);
        CHECK(count_first == count_second);  // siblings do not inherit each other's descriptors
    }
}

TEST_CASE("a spawned child starts from a fresh image, a forked child from a copy") {
    global_value = 42;
    auto [reader, writer] = zmp::Pipe(false);
    zmp::Process forked = zmp::get_context("fork").Process(report_global, writer);
    zmp::Process spawned = zmp::get_context("spawn").Process(report_global, writer);
    forked.start();
    CHECK(reader.recv<int>() == 42);
    spawned.start();
    CHECK(reader.recv<int>() == 0);
    forked.join();
    spawned.join();
}

TEST_CASE("a registered function travels by name") {
    const auto id = zmp::detail::identify(reinterpret_cast<const void*>(&registered_target),
                                          zmp::detail::trampoline_for<decltype(&registered_target)>());
    CHECK(id.name == "registered_target");
    auto [reader, writer] = zmp::Pipe(false);
    zmp::Process p = zmp::get_context(any_method()).Process(registered_target, writer, "found");
    p.start();
    CHECK(reader.recv<std::string>() == "found by name");
    p.join();
    CHECK(p.exitcode() == 0);
}

TEST_CASE("capture-free lambdas travel to every start method") {
    auto [reader, writer] = zmp::Pipe(false);
    zmp::Process p = zmp::get_context(any_method()).Process([](Connection out, int n) { out.send(n * 2); }, writer, 21);
    p.start();
    CHECK(reader.recv<int>() == 42);
    p.join();
    CHECK(p.exitcode() == 0);
}

TEST_CASE("temporaries given as arguments arrive whole under every start method") {
    auto [reader, writer] = zmp::Pipe(false);
    // Both the copy that travels and the one bound for fork are made from these temporaries.
    zmp::Process p = zmp::get_context(any_method())
                         .Process([](Connection out, std::string text,
                                     std::vector<int> numbers) { out.send(std::make_tuple(text, numbers)); },
                                  writer, std::string("a temporary string"), std::vector<int>{1, 2, 3});
    p.start();
    CHECK(reader.recv<std::tuple<std::string, std::vector<int>>>() ==
          std::make_tuple(std::string("a temporary string"), std::vector<int>{1, 2, 3}));
    p.join();
    CHECK(p.exitcode() == 0);
}

TEST_CASE("what cannot travel is a clear error from start() under spawn and forkserver") {
    const StartMethod method = GENERATE(StartMethod::spawn, StartMethod::forkserver);
    auto ctx = zmp::get_context(method);
    int captured = 1;
    zmp::Process capturing = ctx.Process([captured] { (void)captured; });
    try {
        capturing.start();
        FAIL("no error");
    } catch (const zmp::ValueError& e) {
        CHECK(std::string(e.what()).find("captures") != std::string::npos);
    }
    CHECK_FALSE(capturing.pid());  // nothing was started

    zmp::Process unpackable = ctx.Process(takes_not_packable, NotPackable{});
    CHECK_THROWS_AS(unpackable.start(), zmp::ValueError);

    Unregistered subclass;
    zmp::set_start_method(method, true);
    try {
        subclass.start();
        FAIL("no error");
    } catch (const zmp::ValueError& e) {
        CHECK(std::string(e.what()).find("ZMP_REGISTER_PROCESS") != std::string::npos);
    }
    CHECK(zmp::active_children().empty());
    static_assert(zmp::travels<decltype(&say_hello), Connection>);
    static_assert(!zmp::travels<decltype(&takes_not_packable), NotPackable>);
}

TEST_CASE("a child whose main() skips zmp::init() stops with a clear message and no fork bomb") {
    const std::string method = GENERATE("spawn", "forkserver");
    char log[] = "/tmp/zmp-test-init-XXXXXX";
    int fd = ::mkstemp(log);
    REQUIRE(fd >= 0);
    ::close(fd);
    char err[] = "/tmp/zmp-test-init-err-XXXXXX";
    fd = ::mkstemp(err);
    REQUIRE(fd >= 0);
    ::close(fd);
    auto result =
        test_util::run_command(std::string(HELPER_init_check) + " " + log + " child-skips " + method + " 2>" + err);
    std::ifstream errors(err);
    std::stringstream err_text;
    err_text << errors.rdbuf();
    std::ifstream runs(log);
    int main_runs = 0;
    for (std::string line; std::getline(runs, line);) ++main_runs;
    ::unlink(log);
    ::unlink(err);
    CHECK(result.status == 3);                                             // start() raised
    CHECK(result.out.find("zmp::init(argc, argv)") != std::string::npos);  // naming the fix
    CHECK(err_text.str().find("zmp::init(argc, argv)") != std::string::npos);
    CHECK(main_runs == 2);  // the parent, and one child that stopped: never a third
}

TEST_CASE("spawn and forkserver need zmp::init() in the parent too") {
    const std::string method = GENERATE("spawn", "forkserver");
    char log[] = "/tmp/zmp-test-init-XXXXXX";
    int fd = ::mkstemp(log);
    REQUIRE(fd >= 0);
    ::close(fd);
    auto result = test_util::run_command(std::string(HELPER_init_check) + " " + log + " parent-skips " + method);
    std::ifstream runs(log);
    int main_runs = 0;
    for (std::string line; std::getline(runs, line);) ++main_runs;
    ::unlink(log);
    CHECK(result.status == 3);
    CHECK(result.out.find("zmp::init(argc, argv)") != std::string::npos);
    CHECK(main_runs == 1);
}

TEST_CASE("a SIGKILLed fork server is restarted by the next start()") {
    auto ctx = zmp::get_context("forkserver");
    auto [reader, writer] = zmp::Pipe(false);
    zmp::Process first = ctx.Process(say_hello, writer);
    first.start();
    CHECK(reader.recv<std::string>() == "hello");
    first.join();
    const auto server = zmp::detail::forkserver_pid();
    REQUIRE(server.has_value());
    REQUIRE(::kill(*server, SIGKILL) == 0);
    const int server_fd = zmp::detail::open_pidfd(*server);
    if (server_fd >= 0) {
        zmp::detail::wait_fd_readable(server_fd, zmp::detail::Deadline::after(zmp::Seconds(30)));
        ::close(server_fd);
    }

    zmp::Process second = ctx.Process(say_hello, writer);
    second.start();
    CHECK(reader.recv<std::string>() == "hello");
    second.join();
    CHECK(second.exitcode() == 0);
    CHECK(zmp::detail::forkserver_pid() != server);  // a new server
}

TEST_CASE("a child of a fork server that died is still joined and its end reported") {
    auto ctx = zmp::get_context("forkserver");
    auto [reader, writer] = zmp::Pipe(false);
    zmp::Process sleeper = ctx.Process(
        [](Connection out) {
            out.send(1);
            std::this_thread::sleep_for(0.3s);
        },
        writer);
    sleeper.start();
    CHECK(reader.recv<int>() == 1);
    ::kill(*zmp::detail::forkserver_pid(), SIGKILL);
    CHECK(sleeper.join(30s));
    CHECK(sleeper.exitcode() == 255);  // its status went with the server, as in Python
}

TEST_CASE("the run's authkey is made at random and is the same in children of every start method") {
    const zmp::Authkey mine = zmp::current_authkey();
    CHECK(mine != zmp::Authkey{});  // made from random bytes, not left zero
    auto [reader, writer] = zmp::Pipe(false);
    zmp::Process p = zmp::get_context(any_method())
                         .Process(
                             [](Connection out) {
                                 const zmp::Authkey& key = zmp::current_authkey();
                                 out.send(std::vector<std::uint8_t>(key.begin(), key.end()));
                             },
                             writer);
    p.start();
    const auto theirs = reader.recv<std::vector<std::uint8_t>>();
    CHECK(theirs == std::vector<std::uint8_t>(mine.begin(), mine.end()));
    p.join();
    CHECK(p.exitcode() == 0);
}

namespace {
// The same names as tests/helpers/exec_target.cpp registers, with other bodies.
void exec_write(std::string path, int value) { std::ofstream(path) << "test " << value * 2; }
ZMP_REGISTER_AS("zmp_test_exec_write", exec_write);
int exec_square(int x) { return x * x; }
ZMP_TASK("zmp_test_exec_square", exec_square);
void unregistered_write(std::string path) { std::ofstream(path) << "unregistered"; }
int unregistered_square(int x) { return x * x; }

std::string read_text(const std::string& path) {
    std::ifstream in(path);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}
}  // namespace

TEST_CASE("set_executable: spawn children and a spawn Pool's workers run the given zmp program, by registered name") {
    char pattern[] = "/tmp/zmp-test-exec-XXXXXX";
    REQUIRE(::mkdtemp(pattern) != nullptr);
    const std::string dir = pattern;
    auto ctx = zmp::get_context("spawn");
    zmp::set_executable(HELPER_exec_target);

    zmp::Process child = ctx.Process(exec_write, dir + "/registered", 21);
    child.start();
    child.join();
    CHECK(child.exitcode() == 0);
    CHECK(read_text(dir + "/registered") == "exec_target 42");  // the other program's body ran

    // Not registered: refused by the child before it runs anything, and said by start().
    zmp::Process refused = ctx.Process(unregistered_write, dir + "/unregistered");
    CHECK_THROWS_WITH(refused.start(), Catch::Matchers::Contains("registered by name"));
    CHECK_FALSE(std::filesystem::exists(dir + "/unregistered"));

    {
        zmp::Pool pool({.processes = 1, .context = zmp::StartMethod::spawn});
        CHECK(pool.apply(exec_square, 5) == 26);
        CHECK_THROWS_WITH(pool.apply(unregistered_square, 5), Catch::Matchers::Contains("registered by name"));
        CHECK(pool.apply(exec_square, 6) == 37);  // the pool goes on
    }

    // Back to this binary.
    zmp::set_executable("");
    zmp::Process again = ctx.Process(exec_write, dir + "/again", 21);
    again.start();
    again.join();
    CHECK(again.exitcode() == 0);
    CHECK(read_text(dir + "/again") == "test 42");
    std::filesystem::remove_all(dir);
}

TEST_CASE("set_executable refuses what is not an executable zmp program, and keeps its choice") {
    CHECK_THROWS_WITH(zmp::set_executable("/nonexistent/zmp-program"),
                      Catch::Matchers::Contains("not an executable file"));
    CHECK_THROWS_WITH(zmp::set_executable("/tmp"), Catch::Matchers::Contains("not an executable file"));
    CHECK_THROWS_WITH(zmp::set_executable("/bin/true"), Catch::Matchers::Contains("not a program linked with zmp"));
    // Nothing changed: a spawn child still runs this binary.
    zmp::Process child = zmp::get_context("spawn").Process(unregistered_square, 2);
    child.start();
    child.join();
    CHECK(child.exitcode() == 0);
    // The helper itself is a working zmp program.
    const auto direct = test_util::run_command(std::string(HELPER_exec_target) + " pool");
    CHECK(direct.status == 0);
    CHECK(direct.out == "10\n");
}
