// A pool on host "a" served by workers joined from hosts "b" and "c" (network namespaces,
// netlab.hpp): exact results over real tcp with CURVE; a host cut mid-map (no FIN, no RST) costs
// nothing but time; a worker with a wrong key is refused. Skipped, and reported as skipped, where
// namespaces cannot be made.
#include <catch2/catch.hpp>

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "join_tasks.hpp"
#include "netlab.hpp"
#include "zmp/authkey.hpp"
#include "zmp/pool.hpp"

using namespace std::chrono_literals;
using test_util::NetLab;

using test_util::exit_code;
using test_util::read_line;
using test_util::write_line;

namespace {

struct KeyFile {
    std::string dir, path;
    zmp::Authkey key = zmp::generate_authkey();
    KeyFile() {
        char pattern[] = "/tmp/zmp-multihost-XXXXXX";
        REQUIRE(::mkdtemp(pattern) != nullptr);
        dir = pattern;
        path = dir + "/key";
        zmp::write_authkey_file(path, key);
    }
    ~KeyFile() { (void)std::system(("rm -rf " + dir).c_str()); }
};

std::vector<std::string> worker_argv(const std::string& endpoint, const std::string& key_file, const std::string& name,
                                     int processes) {
    return {HELPER_pool_task_worker,   "--connect", endpoint, "--authkey-file", key_file, "--name", name, "--processes",
            std::to_string(processes), "--grace",   "20"};
}

bool wait_for_workers(zmp::Pool& pool, int count) {
    const auto deadline = std::chrono::steady_clock::now() + 60s;
    while (pool.processes() != count && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(10ms);
    return pool.processes() == count;
}

// The pool's head: a process on host a with a Pool of no local workers, bound on a's address with
// `key`, that runs `body` on it (its exit code is body's). `endpoint` is where workers join.
struct Head {
    pid_t pid = -1;
    std::string endpoint;

    Head(NetLab& lab, const KeyFile& key, zmp::PoolOptions options, const std::function<int(zmp::Pool&)>& body) {
        int endpoint_pipe[2];
        REQUIRE(::pipe(endpoint_pipe) == 0);
        options.processes = 0;
        options.bind = "tcp://" + lab.address("a") + ":0";
        options.authkey = key.key;
        pid = lab.fork_into("a", [&] {
            zmp::Pool pool(options);
            write_line(endpoint_pipe[1], pool.endpoint());
            return body(pool);
        });
        ::close(endpoint_pipe[1]);  // a head that fails before it writes reads as an empty endpoint
        endpoint = read_line(endpoint_pipe[0]);
        ::close(endpoint_pipe[0]);
    }
};

}  // namespace

TEST_CASE("workers on hosts b and c join a pool on host a: a 10,000-task map returns exact results") {
    NetLab lab({"a", "b", "c"});
    if (!lab) test_util::skip_test(lab.why());
    KeyFile key;
    const Head head(lab, key, {}, [&](zmp::Pool& pool) {
        if (!wait_for_workers(pool, 4)) return 1;
        std::vector<long> input, expected;
        for (long i = 0; i < 10000; ++i) {
            input.push_back(i);
            expected.push_back(i * i);
        }
        if (pool.map(join_tasks::square, input, 1) != expected) return 2;
        return 0;
    });
    const std::string& endpoint = head.endpoint;
    REQUIRE(endpoint.find(lab.address("a")) != std::string::npos);
    const pid_t b = lab.spawn("b", worker_argv(endpoint, key.path, "b", 2), key.dir + "/b.log");
    const pid_t c = lab.spawn("c", worker_argv(endpoint, key.path, "c", 2), key.dir + "/c.log");
    CHECK(exit_code(head.pid) == 0);
    CHECK(exit_code(b) == 0);  // retired when the pool closed
    CHECK(exit_code(c) == 0);
}

TEST_CASE("host c is cut mid-map (no FIN): its tasks run again on host b, every result exactly once") {
    NetLab lab({"a", "b", "c"});
    if (!lab) test_util::skip_test(lab.why());
    KeyFile key;
    int progress_pipe[2];
    REQUIRE(::pipe(progress_pipe) == 0);
    const Head head(lab, key, {.max_retries = 2}, [&](zmp::Pool& pool) {
        if (!wait_for_workers(pool, 2)) return 1;
        std::vector<long> input, expected;
        for (long i = 0; i < 600; ++i) {
            input.push_back(i);
            expected.push_back(i * i);
        }
        // The progress callback runs on the pool's callback thread and may run once more after
        // get() returned: what it uses must outlive this scope.
        auto told = std::make_shared<std::atomic<bool>>(false);
        const int cut_signal = progress_pipe[1];
        auto result = pool.map_async(
            join_tasks::slow_square, input,
            zmp::MapOptions{.chunksize = 1, .progress = [told, cut_signal](std::size_t done, std::size_t) {
                                if (done >= 60 && !told->exchange(true)) write_line(cut_signal, "cut now");
                            }});
        if (result.get() != expected) return 2;
        // Host c is gone from the pool.
        if (!wait_for_workers(pool, 1)) return 3;
        return 0;
    });
    const std::string& endpoint = head.endpoint;
    const pid_t b = lab.spawn("b", worker_argv(endpoint, key.path, "b", 1), key.dir + "/b.log");
    const pid_t c = lab.spawn("c", worker_argv(endpoint, key.path, "c", 1), key.dir + "/c.log");
    REQUIRE(read_line(progress_pipe[0]) == "cut now");
    REQUIRE(lab.cut("c"));
    CHECK(exit_code(head.pid) == 0);
    CHECK(exit_code(b) == 0);
    ::kill(c, SIGKILL);  // it would wait out its grace period behind the cut
    exit_code(c);
}

TEST_CASE("a worker on host b with a wrong key is refused, and one with the right key serves") {
    NetLab lab({"a", "b"});
    if (!lab) test_util::skip_test(lab.why());
    KeyFile key, wrong;
    const Head head(lab, key, {}, [&](zmp::Pool& pool) {
        if (!wait_for_workers(pool, 1)) return 1;
        if (pool.apply(join_tasks::square, 9L) != 81) return 2;
        return 0;
    });
    const std::string& endpoint = head.endpoint;
    const pid_t intruder = lab.spawn("b", worker_argv(endpoint, wrong.path, "intruder", 1), wrong.dir + "/log");
    CHECK(exit_code(intruder) == 1);
    const pid_t b = lab.spawn("b", worker_argv(endpoint, key.path, "b", 1), key.dir + "/b.log");
    CHECK(exit_code(head.pid) == 0);
    CHECK(exit_code(b) == 0);
}

TEST_CASE("a worker whose host was cut and comes back is welcomed again") {
    NetLab lab({"a", "b"});
    if (!lab) test_util::skip_test(lab.why());
    KeyFile key;
    int state_pipe[2], heal_pipe[2];
    REQUIRE(::pipe(state_pipe) == 0);
    REQUIRE(::pipe(heal_pipe) == 0);
    const Head head(lab, key, {}, [&](zmp::Pool& pool) {
        if (!wait_for_workers(pool, 1)) return 1;
        const long first = pool.apply(join_tasks::worker_pid, 0L);
        write_line(state_pipe[1], "joined");
        if (!wait_for_workers(pool, 0)) return 2;  // the cut is noticed
        write_line(state_pipe[1], "lost");
        if (read_line(heal_pipe[0]) != "healed") return 3;
        if (!wait_for_workers(pool, 1)) return 4;  // the same process joins again
        if (pool.apply(join_tasks::worker_pid, 0L) != first) return 5;
        std::vector<long> input{1, 2, 3};
        if (pool.map(join_tasks::square, input) != std::vector<long>{1, 4, 9}) return 6;
        return 0;
    });
    const std::string& endpoint = head.endpoint;
    std::vector<std::string> argv = worker_argv(endpoint, key.path, "b", 1);
    argv.back() = "120";  // --grace: it must outlive the cut
    const pid_t b = lab.spawn("b", argv, key.dir + "/b.log");
    REQUIRE(read_line(state_pipe[0]) == "joined");
    REQUIRE(lab.cut("b"));
    REQUIRE(read_line(state_pipe[0]) == "lost");
    REQUIRE(lab.heal("b"));
    write_line(heal_pipe[1], "healed");
    CHECK(exit_code(head.pid) == 0);
    CHECK(exit_code(b) == 0);
}
