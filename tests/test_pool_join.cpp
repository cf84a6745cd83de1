// Pool workers that join over tcp (PoolOptions::bind, zmp/worker.hpp), on loopback: real worker
// processes (a program of another build, helpers/pool_task_worker.cpp, and this binary forked),
// real tcp with CURVE, real signals.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "join_tasks.hpp"
#include "lab_files.hpp"
#include "log_collector.hpp"
#include "test_util.hpp"
#include "zmp/authkey.hpp"
#include "zmp/logging.hpp"
#include "zmp/pipe.hpp"
#include "zmp/pool.hpp"
#include "zmp/transport/codec.hpp"
#include "zmp/transport/security.hpp"
#include "zmp/transport/zsocket.hpp"
#include "zmp/worker.hpp"

using namespace std::chrono_literals;

using test_util::exit_code;
using test_util::read_line;
using test_util::write_line;

namespace {

long only_in_tests(long x) { return x; }
ZMP_TASK("only_in_tests", only_in_tests);

// A directory of its own for key files and worker logs, removed at the end.
struct Scratch : test_util::ScratchDir {
    Scratch() : ScratchDir("zmp-join") {}
    std::string key_file(const std::string& name, const zmp::Authkey& key) const {
        const std::string path = dir + "/" + name;
        zmp::write_authkey_file(path, key);
        return path;
    }
};

// Starts `argv` with stdout and stderr going to `log`.
pid_t launch(const std::vector<std::string>& argv, const std::string& log) {
    const pid_t pid = ::fork();
    if (pid == 0) test_util::exec_logged(argv, log);
    return pid;
}

std::string read_file(const std::string& path) {
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
}

pid_t launch_worker(const std::string& endpoint, const std::string& key_file, const std::string& name,
                    const std::string& log) {
    return launch(
        {HELPER_pool_task_worker, "--connect", endpoint, "--authkey-file", key_file, "--name", name, "--grace", "30"},
        log);
}

// Waits (generously: the machine is shared) until the pool has `count` workers.
void wait_for_workers(zmp::Pool& pool, int count) {
    const auto deadline = std::chrono::steady_clock::now() + 60s;
    while (pool.processes() != count && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(10ms);
    REQUIRE(pool.processes() == count);
}

std::vector<long> range(long n) {
    std::vector<long> v;
    for (long i = 0; i < n; ++i) v.push_back(i);
    return v;
}

// Sends x through `out` (a descriptor of this host), and says which process ran it.
long through_connection(zmp::Connection out, long x) {
    out.send(x);
    return static_cast<long>(::getpid());
}

void join_as_same_build(std::string endpoint, zmp::Authkey key) {
    zmp::exit(zmp::join_pool({.connect = endpoint, .authkey = key, .name = "twin"}));
}

}  // namespace

TEST_CASE("a worker of another build joins over tcp, runs registered tasks by name, and lacks what it lacks") {
    Scratch scratch;
    const zmp::Authkey key = zmp::generate_authkey();
    const std::string log = scratch.dir + "/worker.log";
    pid_t worker;
    {
        zmp::Pool pool(zmp::PoolOptions{.processes = 0, .bind = "tcp://127.0.0.1:0", .authkey = key});
        const std::string endpoint = pool.endpoint();
        REQUIRE(endpoint.rfind("tcp://127.0.0.1:", 0) == 0);
        CHECK(endpoint != "tcp://127.0.0.1:0");  // the real port
        CHECK(pool.processes() == 0);
        worker = launch_worker(endpoint, scratch.key_file("key", key), "far", log);
        wait_for_workers(pool, 1);

        std::vector<long> expected;
        for (long i = 0; i < 2000; ++i) expected.push_back(i * i);
        CHECK(pool.map(join_tasks::square, range(2000)) == expected);
        // Every task ran in the joined worker (the pool has no other).
        for (long pid : pool.map(join_tasks::worker_pid, range(50))) CHECK(pid == worker);

        // An unregistered function cannot reach another build: that task fails, naming the worker.
        try {
            pool.apply([](long x) { return x + 1; }, 1L);
            FAIL("no error");
        } catch (const zmp::ValueError& e) {
            CHECK_THAT(e.what(), Catch::Contains("far") && Catch::Contains("another build"));
        }
        // A task the worker program does not have fails alone, naming the task and the worker.
        try {
            pool.apply(only_in_tests, 1L);
            FAIL("no error");
        } catch (const zmp::ValueError& e) {
            CHECK(std::string(e.what()) == "worker far has no task 'only_in_tests'");
        }
        CHECK(pool.map(join_tasks::square, std::vector<long>{3, 4}) == std::vector<long>{9, 16});
        CHECK(pool.processes() == 1);
    }
    // The pool retired it when it closed.
    CHECK(exit_code(worker) == 0);
}

TEST_CASE("this very program, joined as a worker, takes unregistered functions by address") {
    const zmp::Authkey key = zmp::generate_authkey();
    zmp::Pool pool(zmp::PoolOptions{.processes = 0, .bind = "tcp://127.0.0.1:0", .authkey = key});
    zmp::Process twin = zmp::get_context(zmp::StartMethod::fork).Process(join_as_same_build, pool.endpoint(), key);
    twin.start();
    wait_for_workers(pool, 1);
    CHECK(pool.map([](long x) { return 3 * x; }, std::vector<long>{1, 2, 3}) == std::vector<long>{3, 6, 9});
    CHECK(pool.apply(join_tasks::worker_pid, 0L) == twin.pid().value());
    pool.close();
    pool.join();
    twin.join(60s);
    CHECK(twin.exitcode() == 0);
}

TEST_CASE("local children and joined workers share one map") {
    Scratch scratch;
    const zmp::Authkey key = zmp::generate_authkey();
    zmp::Pool pool(zmp::PoolOptions{.processes = 2, .bind = "tcp://127.0.0.1:0", .authkey = key});
    const pid_t worker = launch_worker(pool.endpoint(), scratch.key_file("key", key), "near", scratch.dir + "/w.log");
    wait_for_workers(pool, 3);
    // The first deal gives every worker a task: the joined one is among those that ran some.
    const std::vector<long> pids = pool.map(join_tasks::worker_pid, range(300), 1);
    const std::set<long> distinct(pids.begin(), pids.end());
    CHECK(distinct.count(worker) == 1);
    CHECK(distinct.size() >= 2);
    pool.close();
    pool.join();
    CHECK(exit_code(worker) == 0);
}

TEST_CASE("a worker holding another key is refused at once, and the pool logs its address and goes on") {
    Scratch scratch;
    const zmp::Authkey key = zmp::generate_authkey();
    test_util::Collector collector;
    zmp::Pool pool(zmp::PoolOptions{.processes = 0, .bind = "tcp://127.0.0.1:0", .authkey = key});
    const std::string log = scratch.dir + "/wrong.log";
    const pid_t wrong =
        launch_worker(pool.endpoint(), scratch.key_file("wrong", zmp::generate_authkey()), "intruder", log);
    CHECK(exit_code(wrong) == 1);
    const std::string said = read_file(log);
    CHECK_THAT(said, Catch::Contains(pool.endpoint()));
    CHECK(pool.processes() == 0);
    // The refusal is logged with the peer's address.
    CHECK(collector.wait_for("refused tcp peer 127.0.0.1"));
    // A worker with the right key is welcome.
    const pid_t right =
        launch_worker(pool.endpoint(), scratch.key_file("right", key), "friend", scratch.dir + "/r.log");
    wait_for_workers(pool, 1);
    CHECK(pool.apply(join_tasks::square, 12L) == 144);
    pool.close();
    pool.join();
    CHECK(exit_code(right) == 0);
}

TEST_CASE("a joined worker killed mid-map: its tasks run elsewhere, every result exactly once") {
    Scratch scratch;
    const zmp::Authkey key = zmp::generate_authkey();
    zmp::Pool pool(zmp::PoolOptions{.processes = 1, .max_retries = 1, .bind = "tcp://127.0.0.1:0", .authkey = key});
    const pid_t worker = launch_worker(pool.endpoint(), scratch.key_file("key", key), "doomed", scratch.dir + "/w.log");
    wait_for_workers(pool, 2);
    std::atomic<std::size_t> progress{0};
    auto result = pool.map_async(
        join_tasks::slow_square, range(300),
        zmp::MapOptions{.chunksize = 1, .progress = [&](std::size_t done, std::size_t) { progress = done; }});
    const auto deadline = std::chrono::steady_clock::now() + 60s;
    while (progress < 20 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(5ms);
    ::kill(worker, SIGKILL);
    CHECK(exit_code(worker) == 100 + SIGKILL);
    std::vector<long> expected;
    for (long i = 0; i < 300; ++i) expected.push_back(i * i);
    CHECK(result.get(120s) == expected);
    wait_for_workers(pool, 1);  // it is gone from the pool; the local worker remains
}

TEST_CASE("a joined worker's last task fails with WorkerLost naming it when no retry is allowed") {
    Scratch scratch;
    const zmp::Authkey key = zmp::generate_authkey();
    zmp::Pool pool(zmp::PoolOptions{.processes = 0, .bind = "tcp://127.0.0.1:0", .authkey = key});
    const pid_t worker = launch_worker(pool.endpoint(), scratch.key_file("key", key), "mortal", scratch.dir + "/w.log");
    wait_for_workers(pool, 1);
    auto pid = pool.apply_async(join_tasks::worker_pid, 0L);
    REQUIRE(pid.get(60s) == worker);
    auto slow = pool.apply_async(join_tasks::slow_square, 5L);
    ::kill(worker, SIGKILL);
    CHECK(exit_code(worker) == 100 + SIGKILL);
    if (slow.wait(120s) && !slow.successful()) {
        try {
            slow.get();
        } catch (const zmp::WorkerLost& e) {
            CHECK(e.worker() == "mortal");
            CHECK(e.pid() == worker);
        }
    } else {
        // It finished before the kill landed: nothing was lost, which is right too.
        CHECK(slow.get() == 25);
    }
    wait_for_workers(pool, 0);
}

TEST_CASE("the dispatcher's endpoint survives garbage from a peer holding the key") {
    Scratch scratch;
    const zmp::Authkey key = zmp::generate_authkey();
    zmp::Pool pool(zmp::PoolOptions{.processes = 0, .bind = "tcp://127.0.0.1:0", .authkey = key});
    {
        zmq::context_t context(1);
        auto peer = zmp::transport::open_socket(context, zmq::socket_type::dealer);
        zmp::transport::apply_client_security(peer, zmp::transport::TcpSecurity::curve(key));
        REQUIRE(zmp::transport::connect_and_authenticate(context, peer, pool.endpoint(), 30s) ==
                zmp::transport::Handshake::succeeded);
        auto kind_of = [&](std::chrono::milliseconds wait) {
            std::vector<zmq::message_t> frames;
            if (!zmp::transport::recv_message(peer, frames, 2, wait) || frames.size() != 1) return -1;
            auto decoded = zmp::transport::decode(static_cast<const char*>(frames[0].data()), frames[0].size());
            return zmp::transport::convert<int>(decoded.get().via.array.ptr[0]);
        };
        // Bytes that are not msgpack: refused.
        zmp::transport::send_message(peer, {zmq::str_buffer("\xc1\xc1 garbage")});
        CHECK(kind_of(30s) == 5);
        // A result from a connection the pool does not know (its worker was lost): dropped, and
        // "join again".
        msgpack::sbuffer stray;
        msgpack::packer<msgpack::sbuffer>(stray).pack(std::make_tuple(0, std::vector<int>{}, 0));
        zmp::transport::send_message(peer, {zmq::const_buffer(stray.data(), stray.size())});
        CHECK(kind_of(30s) == 7);
        // Three frames: dropped (nothing to answer for a peer that was never admitted).
        zmp::transport::send_message(peer, {zmq::str_buffer("a"), zmq::str_buffer("b"), zmq::str_buffer("c")});
        // A hello that does not decode: refused.
        msgpack::sbuffer bad_hello;
        msgpack::packer<msgpack::sbuffer>(bad_hello).pack(std::make_tuple(3, "not a hello"));
        zmp::transport::send_message(peer, {zmq::const_buffer(bad_hello.data(), bad_hello.size())});
        CHECK(kind_of(30s) == 5);
        CHECK(pool.processes() == 0);
    }
    // And a real worker joins and works.
    const pid_t worker = launch_worker(pool.endpoint(), scratch.key_file("key", key), "after", scratch.dir + "/w.log");
    wait_for_workers(pool, 1);
    CHECK(pool.map(join_tasks::square, range(10)).back() == 81);
    pool.close();
    pool.join();
    CHECK(exit_code(worker) == 0);
}

TEST_CASE("zmp-worker: --help documents every flag, bad flags exit 2, an unreachable pool is given up") {
    Scratch scratch;
    const std::string exe = ZMP_WORKER_EXE;
    auto help = test_util::run_command(exe + " --help");
    CHECK(help.status == 0);
    for (const char* flag :
         {"--connect", "--authkey-file", "--processes", "--name", "--load", "--grace", "--heartbeat"}) {
        CHECK_THAT(help.out, Catch::Contains(flag));
    }
    CHECK(test_util::run_command(exe + " --bogus 2>&1").status == 2);
    CHECK(test_util::run_command(exe + " --authkey-file /etc/hostname 2>&1").status == 2);  // no --connect
    const std::string key = scratch.key_file("key", zmp::generate_authkey());
    auto missing =
        test_util::run_command(exe + " --connect tcp://127.0.0.1:1 --authkey-file " + key + " --grace 0.5 2>&1");
    CHECK(missing.status == 1);
    CHECK_THAT(missing.out, Catch::Contains("cannot reach the pool at tcp://127.0.0.1:1"));
}

namespace {

// This test binary's own path: its main is zmp::init() and then Catch.
std::string this_program() {
    char path[4096] = {};
    const ssize_t n = ::readlink("/proc/self/exe", path, sizeof path - 1);
    REQUIRE(n > 0);
    return std::string(path, static_cast<std::size_t>(n));
}

}  // namespace

TEST_CASE("a program run with --zmp-worker ENDPOINT serves the pool from zmp::init instead of its main") {
    Scratch scratch;
    const zmp::Authkey key = zmp::generate_authkey();
    const std::string key_file = scratch.key_file("key", key);
    const std::string exe = this_program();
    zmp::Pool pool(zmp::PoolOptions{.processes = 0, .bind = "tcp://127.0.0.1:0", .authkey = key});
    // The flag form, with worker_main's flags after the endpoint: two worker processes.
    const pid_t service = launch({exe, "--zmp-worker", pool.endpoint(), "--authkey-file", key_file, "--processes", "2",
                                  "--name", "svc", "--grace", "30"},
                                 scratch.dir + "/service.log");
    wait_for_workers(pool, 2);
    // The key file from the environment, the endpoint after '='.
    const pid_t second = launch({"/usr/bin/env", "ZMP_AUTHKEY_FILE=" + key_file, exe, "--zmp-worker=" + pool.endpoint(),
                                 "--name", "env", "--grace", "30"},
                                scratch.dir + "/second.log");
    wait_for_workers(pool, 3);

    // Tasks registered in this program only, and (the same build) functions by address.
    CHECK(pool.map(only_in_tests, range(500), 1) == range(500));
    CHECK(pool.map([](long x) { return 3 * x; }, std::vector<long>{1, 2, 3}) == std::vector<long>{3, 6, 9});
    // They ran in the launched programs (the service's two forked workers, the second one itself).
    const std::vector<long> pids = pool.map(join_tasks::worker_pid, range(300), 1);
    const std::set<long> distinct(pids.begin(), pids.end());
    CHECK(distinct.count(::getpid()) == 0);
    CHECK(distinct.count(second) == 1);
    CHECK(distinct.size() >= 2);
    pool.close();
    pool.join();
    // Retired by the pool: exit code 0, and Catch never ran in them (it rejects --zmp-worker).
    CHECK(exit_code(service) == 0);
    CHECK(exit_code(second) == 0);
    CHECK_THAT(read_file(scratch.dir + "/service.log") + read_file(scratch.dir + "/second.log"),
               !Catch::Contains("test cases"));

    // Bad use exits 2 with a clear message, before anything else runs.
    auto bare = test_util::run_command(exe + " --zmp-worker 2>&1");
    CHECK(bare.status == 2);
    CHECK_THAT(bare.out, Catch::Contains("--zmp-worker needs the pool's endpoint"));
    auto no_key = test_util::run_command("env -u ZMP_AUTHKEY_FILE " + exe + " --zmp-worker tcp://127.0.0.1:1 2>&1");
    CHECK(no_key.status == 2);
    CHECK_THAT(no_key.out, Catch::Contains("--authkey-file"));
}

TEST_CASE("tasks whose arguments hold Connections run on local workers only and fail clearly without them") {
    Scratch scratch;
    const zmp::Authkey key = zmp::generate_authkey();
    const std::string key_file = scratch.key_file("key", key);
    SECTION("local workers beside joined ones take every such task") {
        zmp::Pool pool(zmp::PoolOptions{.processes = 1, .bind = "tcp://127.0.0.1:0", .authkey = key});
        const pid_t worker = launch_worker(pool.endpoint(), key_file, "far", scratch.dir + "/w.log");
        wait_for_workers(pool, 2);
        auto [reader, writer] = zmp::Pipe(false);
        std::vector<std::tuple<zmp::Connection, long>> calls;
        for (long i = 0; i < 200; ++i) calls.emplace_back(writer, i);
        // Chunks of one: the first deal offers the joined worker some; they wait for the local one.
        const std::vector<long> pids = pool.starmap(through_connection, calls, {.chunksize = 1});
        REQUIRE(pids.size() == 200);
        const std::set<long> distinct(pids.begin(), pids.end());
        CHECK(distinct.size() == 1);
        CHECK(distinct.count(worker) == 0);
        CHECK(distinct.count(::getpid()) == 0);
        long sum = 0;
        for (int i = 0; i < 200; ++i) sum += reader.recv<long>();
        CHECK(sum == 199 * 200 / 2);
        // The joined worker goes on with everything else.
        CHECK(pool.apply(join_tasks::worker_pid, 0L) >= 0);
        std::vector<long> expected;
        for (long i = 0; i < 100; ++i) expected.push_back(i * i);
        CHECK(pool.map(join_tasks::square, range(100), 1) == expected);
        pool.close();
        pool.join();
        CHECK(exit_code(worker) == 0);
    }
    SECTION("a pool of joined workers only fails such a task alone, saying why") {
        zmp::Pool pool(zmp::PoolOptions{.processes = 0, .bind = "tcp://127.0.0.1:0", .authkey = key});
        const pid_t worker = launch_worker(pool.endpoint(), key_file, "far", scratch.dir + "/w.log");
        wait_for_workers(pool, 1);
        auto [reader, writer] = zmp::Pipe(false);
        try {
            pool.apply(through_connection, writer, 1L);
            FAIL("no error");
        } catch (const zmp::ValueError& e) {
            CHECK_THAT(e.what(), Catch::Contains("Connections") && Catch::Contains("local worker") &&
                                     Catch::Contains("processes = 0"));
        }
        CHECK_FALSE(reader.poll(0ms));  // it never ran
        CHECK(pool.apply(join_tasks::square, 7L) == 49);
        pool.close();
        pool.join();
        CHECK(exit_code(worker) == 0);
    }
}

TEST_CASE("maxtasksperchild renews joined workers: a fresh process takes each one's place") {
    Scratch scratch;
    const zmp::Authkey key = zmp::generate_authkey();
    const std::string key_file = scratch.key_file("key", key);
    const bool one_process = GENERATE(true, false);
    CAPTURE(one_process);
    zmp::Pool pool(
        zmp::PoolOptions{.processes = 0, .maxtasksperchild = 5, .bind = "tcp://127.0.0.1:0", .authkey = key});
    // Short grace: a worker renewed just as the pool closes gives up on it soon after.
    std::vector<std::string> argv{HELPER_pool_task_worker,
                                  "--connect",
                                  pool.endpoint(),
                                  "--authkey-file",
                                  key_file,
                                  "--name",
                                  "renewed",
                                  "--grace",
                                  "5"};
    if (!one_process) argv.insert(argv.end(), {"--processes", "2"});
    const pid_t worker = launch(argv, scratch.dir + "/w.log");
    wait_for_workers(pool, one_process ? 1 : 2);
    // Every process runs at most 5 tasks: the count starts again in each fresh one.
    const std::vector<long> counts = pool.map(join_tasks::tasks_in_this_process, range(40), 1);
    REQUIRE(counts.size() == 40);
    for (long count : counts) CHECK((count >= 1 && count <= 5));
    CHECK(std::count(counts.begin(), counts.end(), 5L) >= 40 / 5 - (one_process ? 0 : 1));
    const std::vector<long> pids = pool.map(join_tasks::worker_pid, range(30), 1);
    const std::set<long> distinct(pids.begin(), pids.end());
    if (one_process) {
        CHECK(distinct == std::set<long>{worker});  // started afresh in place: the same pid
    } else {
        CHECK(distinct.count(worker) == 0);  // its children ran them, and were replaced
        CHECK(distinct.size() >= 30 / 5);
    }
    pool.close();
    pool.join();
    const int code = exit_code(worker);
    CHECK((code == 0 || code == 1));  // 1: renewed as the pool closed, and gave up on it
}
