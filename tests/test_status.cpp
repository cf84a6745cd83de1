// zmp-status against this very process, a real running program: its pool's workers and their
// in-flight tasks, a worker killed and replaced, a queue's depth and waiting consumer, a lock's
// holder, processes by name, a Manager's objects — each read from `zmp-status --json` (and once as
// a table), run as a separate process that finds this run by its root pid; and --connect over tcp
// to another program's broker and pool. Also its command line: --help, bad flags, no such run.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "lab_files.hpp"
#include "test_util.hpp"
#include "zmp/authkey.hpp"
#include "zmp/context.hpp"
#include "zmp/manager.hpp"
#include "zmp/pool.hpp"
#include "zmp/process.hpp"
#include "zmp/queue.hpp"
#include "zmp/sync.hpp"

using namespace std::chrono_literals;

namespace {

test_util::CommandResult zmp_status(const std::string& args) {
    return test_util::run_command(std::string(ZMP_STATUS_BIN) + " " + args + " 2>&1");
}

std::string status_json() {
    const auto result = zmp_status("--pid " + std::to_string(::getpid()) + " --json");
    INFO(result.out);
    REQUIRE(result.status == 0);
    return result.out;
}

// The first status whose JSON contains every one of `parts`, asked again for up to 60 s (the
// dispatcher replaces a killed worker a moment after the kill).
std::string status_with(const std::vector<std::string>& parts) {
    const auto until = std::chrono::steady_clock::now() + 60s;
    std::string json;
    for (;;) {
        json = status_json();
        bool all = true;
        for (const auto& part : parts) all = all && json.find(part) != std::string::npos;
        if (all || std::chrono::steady_clock::now() > until) break;
        std::this_thread::sleep_for(50ms);
    }
    return json;
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

std::string this_host() {
    char buffer[256] = {};
    REQUIRE(::gethostname(buffer, sizeof buffer - 1) == 0);
    return buffer;
}

// Says it has started, then waits for `go`.
int wait_for_go(zmp::Queue<int> started, zmp::Event go, int x) {
    started.put(x);
    started.join_thread();
    go.wait();
    return x;
}

int own_pid(int) { return static_cast<int>(::getpid()); }

}  // namespace

TEST_CASE("zmp-status --json on a running pool: its workers, their in-flight tasks, what they have done") {
    zmp::Pool pool(zmp::PoolOptions{.processes = 2, .context = zmp::StartMethod::fork});
    zmp::Queue<int> started;
    zmp::Event go;
    auto a = pool.apply_async(wait_for_go, started, go, 1);
    auto b = pool.apply_async(wait_for_go, started, go, 2);
    started.get(zmp::Seconds(60));
    started.get(zmp::Seconds(60));  // both tasks are running, one on each worker
    std::vector<std::pair<std::string, int>> workers;
    for (auto& child : zmp::active_children()) workers.emplace_back(child.name(), *child.pid());
    REQUIRE(workers.size() == 2);
    const std::string json = status_json();
    INFO(json);
    CHECK(contains(json,
                   "\"processes\":[{\"pid\":" + std::to_string(::getpid()) + ",\"name\":\"MainProcess\",\"pools\":[{"));
    CHECK(contains(json, "\"method\":\"fork\",\"processes\":2,"));
    CHECK(contains(json, "\"state\":\"running\",\"queued\":0,\"jobs\":2,\"restarts\":0,"));
    for (const auto& [name, pid] : workers) {
        const std::string row = "{\"name\":\"" + name + "\",\"pid\":" + std::to_string(pid) + ",\"host\":\"" +
                                this_host() +
                                "\",\"state\":\"busy\",\"tasks_done\":0,\"failures\":0,\"in_flight\":1,\"running\":";
        REQUIRE(contains(json, row));
        CHECK(!json.substr(json.find(row) + row.size()).starts_with("0"));  // the id of the task it runs
    }
    // The broker's part: this process and its workers are its clients, by name and host.
    CHECK(contains(json, "\"clients\":[{\"pid\":"));
    CHECK(contains(json, "{\"pid\":" + std::to_string(::getpid()) + ",\"name\":\"MainProcess\",\"host\":\"" +
                             this_host() + "\","));
    for (const auto& [name, pid] : workers)
        CHECK(contains(
            json, "{\"pid\":" + std::to_string(pid) + ",\"name\":\"" + name + "\",\"host\":\"" + this_host() + "\","));
    go.set();
    CHECK(a.get() == 1);
    CHECK(b.get() == 2);
    std::vector<std::string> idle;
    for (const auto& [name, pid] : workers)
        idle.push_back("{\"name\":\"" + name + "\",\"pid\":" + std::to_string(pid) + ",\"host\":\"" + this_host() +
                       "\",\"state\":\"idle\",\"tasks_done\":1,\"failures\":0,\"in_flight\":0,\"running\":0}");
    const std::string done = status_with(idle);
    INFO(done);
    for (const auto& row : idle) CHECK(contains(done, row));
    CHECK(contains(done, "\"jobs\":0,"));
    // The same as a table.
    const auto table = zmp_status("--pid " + std::to_string(::getpid()));
    INFO(table.out);
    CHECK(table.status == 0);
    CHECK(contains(table.out, "WORKER"));
    CHECK(contains(table.out, workers[0].first + "  " + std::to_string(workers[0].second)));
    pool.close();
    pool.join();
}

TEST_CASE("zmp-status: a killed pool worker shows as ended by its signal and replaced") {
    zmp::Pool pool(zmp::PoolOptions{.processes = 1, .context = zmp::StartMethod::fork});
    const int victim = pool.apply(own_pid, 0);
    REQUIRE(::kill(victim, SIGKILL) == 0);
    // Served by the replacement: it is running before zmp-status is started (a worker forked
    // while popen's pipe is open would hold its write end, and the read would never end).
    CHECK(pool.apply(own_pid, 0) != victim);
    const std::string ended = "{\"name\":\"ForkPoolWorker-1\",\"pid\":" + std::to_string(victim) +
                              ",\"exit\":\"killed by signal 9 (SIGKILL)\",\"retired\":false,\"replaced_by\":"
                              "\"ForkPoolWorker-2\"}";
    const std::string json = status_with({ended, "\"restarts\":1,", "{\"name\":\"ForkPoolWorker-2\",\"pid\":"});
    INFO(json);
    CHECK(contains(json, ended));
    CHECK(contains(json, "\"restarts\":1,"));
    CHECK(contains(json, "{\"name\":\"ForkPoolWorker-2\",\"pid\":"));
    CHECK(!contains(json, "{\"name\":\"ForkPoolWorker-1\",\"pid\":" + std::to_string(victim) + ",\"host\""));
    pool.close();
    pool.join();
}

TEST_CASE("zmp-status: a queue's depth and waiting consumer, a lock's holder") {
    zmp::Queue<int> full;
    for (int i = 0; i < 5; ++i) full.put(i);
    full.join_thread();
    zmp::JoinableQueue<int> empty;
    zmp::Lock lock;
    zmp::Event holding, release;
    zmp::Process consumer([empty] { (void)empty.get(); });
    zmp::Process holder([lock, holding, release] {
        lock.acquire();
        holding.set();
        release.wait();
        lock.release();
    });
    consumer.start();
    holder.start();
    REQUIRE(holding.wait(zmp::Seconds(60)));
    const std::string waiting = "\"depth\":0,\"waiting_consumers\":1,\"waiting_producers\":0,\"unfinished\":0}";
    const std::string json = status_with({waiting});
    INFO(json);
    CHECK(contains(json, "\"kind\":\"Queue\""));
    CHECK(contains(json, "\"depth\":5,\"waiting_consumers\":0,"));
    CHECK(contains(json, "\"kind\":\"JoinableQueue\""));
    CHECK(contains(json, waiting));
    CHECK(contains(json, "\"holder_pid\":" + std::to_string(*holder.pid())));
    CHECK(contains(json,
                   "{\"pid\":" + std::to_string(*consumer.pid()) + ",\"name\":\"" + consumer.name() + "\",\"host\":"));
    CHECK(
        contains(json, "{\"pid\":" + std::to_string(*holder.pid()) + ",\"name\":\"" + holder.name() + "\",\"host\":"));
    empty.put(1);
    release.set();
    consumer.join();
    holder.join();
    CHECK(consumer.exitcode() == 0);
    CHECK(holder.exitcode() == 0);
    const std::string after = status_json();
    INFO(after);
    CHECK(contains(after, "\"holder_pid\":0"));
}

TEST_CASE("zmp-status's command line: --help, bad flags, a run that is not there") {
    const auto help = zmp_status("--help");
    CHECK(help.status == 0);
    CHECK(contains(help.out, "--pid"));
    CHECK(contains(help.out, "--watch"));
    CHECK(contains(help.out, "--json"));
    CHECK(zmp_status("--no-such-flag").status == 2);
    CHECK(zmp_status("--pid notanumber").status == 2);
    CHECK(zmp_status("--pid 1 --run-dir /tmp").status == 2);
    CHECK(zmp_status("--watch -3").status == 2);
    CHECK(contains(help.out, "--connect"));
    CHECK(contains(help.out, "--authkey-file"));
    CHECK(zmp_status("--connect tcp://127.0.0.1:1").status == 2);  // no authkey
    CHECK(zmp_status("--connect tcp://127.0.0.1:1 --pid 1 --authkey-file /nonexistent").status == 2);
    const auto no_key = zmp_status("--connect tcp://127.0.0.1:1 --authkey-file /nonexistent");
    CHECK(no_key.status == 1);
    CHECK(contains(no_key.out, "/nonexistent"));
    const auto missing = zmp_status("--pid 999999999");
    CHECK(missing.status == 1);
    CHECK(contains(missing.out, "no running zmp program with root pid 999999999"));
    CHECK(zmp_status("--run-dir /nonexistent").status == 1);
}

TEST_CASE("zmp-status: a Manager and its objects, with how many entries each holds") {
    zmp::Manager manager;
    auto dict = manager.dict<std::string, int>();
    dict.set("a", 1);
    dict.set("b", 2);
    auto list = manager.list<int>({1, 2, 3});
    const std::string json = status_json();
    INFO(json);
    CHECK(contains(json, "\"objects\":2,\"shut_down\":0,\"owner_pid\":" + std::to_string(::getpid()) + "}"));
    CHECK(contains(json, "{\"kind\":\"Manager\","));
    CHECK(contains(json, "{\"kind\":\"DictProxy\","));
    CHECK(contains(json, "\"shut_down\":0,\"entries\":2}"));
    CHECK(contains(json, "{\"kind\":\"ListProxy\","));
    CHECK(contains(json, "\"shut_down\":0,\"entries\":3}"));
    const auto table = zmp_status("--pid " + std::to_string(::getpid()));
    INFO(table.out);
    CHECK(contains(table.out, "Manager "));
    CHECK(contains(table.out, "shut_down=0 entries=3"));
    manager.shutdown();
    const std::string after = status_json();
    INFO(after);
    CHECK(contains(after, "\"objects\":2,\"shut_down\":1,"));
    CHECK(contains(after, "\"shut_down\":1,\"entries\":0}"));
}

TEST_CASE("zmp-status --connect: a program's broker and pool over tcp on this host, and a wrong key refused") {
    test_util::ScratchDir files("zmp-test-status");
    const std::string key = files.key("authkey"), wrong = files.key("wrong"), stop = files.dir + "/stop",
                      log = files.dir + "/program.log";
    // The program is started with its output in a file (a pipe's write end would outlive it in its workers).
    const pid_t program = ::fork();
    REQUIRE(program >= 0);
    if (program == 0) {
        const int out = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        ::dup2(out, 1);
        ::dup2(out, 2);
        ::execl(HELPER_status_program, HELPER_status_program, key.c_str(), stop.c_str(), static_cast<char*>(nullptr));
        ::_exit(127);
    }
    const auto ready = test_util::line_in(log, "ready ");
    INFO(test_util::log_of(log));
    REQUIRE(ready);
    std::istringstream words(ready->substr(6));
    std::string broker, pool;
    words >> broker >> pool;
    broker = "tcp://127.0.0.1" + broker.substr(broker.rfind(':'));
    pool = "tcp://127.0.0.1" + pool.substr(pool.rfind(':'));

    const auto both = zmp_status("--connect " + broker + " --connect " + pool + " --authkey-file " + key + " --json");
    INFO(both.out);
    CHECK(both.status == 0);
    CHECK(contains(both.out, "{\"endpoints\":[\"" + broker + "\",\"" + pool + "\"],\"broker\":{"));
    CHECK(contains(both.out, "\"depth\":3,"));
    CHECK(contains(both.out, "\"name\":\"MainProcess\",\"pools\":[{"));
    CHECK(contains(both.out, "\"method\":\"fork\",\"processes\":2,"));
    // Each endpoint alone: only its part.
    const auto only_pool = zmp_status("--connect " + pool + " --authkey-file " + key + " --json");
    CHECK(only_pool.status == 0);
    CHECK(contains(only_pool.out, "\"broker\":null,\"processes\":[{"));
    const auto only_broker = zmp_status("--connect " + broker + " --authkey-file " + key + " --json");
    CHECK(only_broker.status == 0);
    CHECK(contains(only_broker.out, "\"processes\":[]}"));
    // Another key: AuthenticationError from either, exit 1.
    for (const std::string& endpoint : {broker, pool}) {
        const auto refused = zmp_status("--connect " + endpoint + " --authkey-file " + wrong);
        INFO(refused.out);
        CHECK(refused.status == 1);
        CHECK(contains(refused.out, "zmp-status: AuthenticationError: "));
    }
    // Both refusals were logged by the program, as warning records.
    const auto pool_refusal = test_util::line_in(log, "pool at ", 60s, true);
    REQUIRE(pool_refusal);
    CHECK(pool_refusal->starts_with("[WARNING/"));
    CHECK(contains(*pool_refusal, "zmp: refused tcp peer 127.0.0.1 (CURVE)"));
    const auto broker_refusal = test_util::line_in(log, "broker: zmp: refused tcp peer", 60s, true);
    REQUIRE(broker_refusal);
    CHECK(broker_refusal->starts_with("[WARNING/"));
    std::ofstream(stop).put('\n');
    CHECK(test_util::exit_code(program) == 0);
}
