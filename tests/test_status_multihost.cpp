// zmp-status across "hosts" (network namespaces, netlab.hpp): a program on host a serves its broker
// and a pool over tcp; zmp-status --connect on host b, holding the authkey, shows its queue, its
// manager, its processes by name and its pool's workers; with another key it is refused with an
// AuthenticationError. Skipped, and reported as skipped, where namespaces cannot be made.
#include <catch2/catch.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>

#include "lab_files.hpp"
#include "netlab.hpp"
#include "test_util.hpp"
#include "zmp/authkey.hpp"

using namespace std::chrono_literals;
using test_util::NetLab;

namespace {

using test_util::line_in;
using test_util::log_of;

// Runs zmp-status with `args` on `host` and waits for it; its exit code (-1 if it did not exit).
int run_status(NetLab& lab, const std::string& host, const std::vector<std::string>& args, const std::string& log) {
    std::vector<std::string> argv{ZMP_STATUS_BIN};
    argv.insert(argv.end(), args.begin(), args.end());
    const pid_t pid = lab.spawn(host, argv, log);
    int status = 0;
    if (::waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return -1;
    return WEXITSTATUS(status);
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// "tcp://0.0.0.0:PORT" as bound on a, reached from b at a's address.
std::string on_host(const std::string& bound, const std::string& address) {
    return "tcp://" + address + bound.substr(bound.rfind(':'));
}

}  // namespace

TEST_CASE("zmp-status --connect from another host shows a program's queue, manager, processes and pool workers") {
    NetLab lab({"a", "b"});
    if (!lab) test_util::skip_test(lab.why());
    test_util::ScratchDir files("zmp-test-status-hosts");
    const std::string key = files.key("authkey"), wrong = files.key("wrong");
    const std::string program_log = files.dir + "/a.log", stop = files.dir + "/stop";
    const pid_t program = lab.spawn("a", {HELPER_status_program, key, stop}, program_log);
    const auto ready = line_in(program_log, "ready ");
    INFO(log_of(program_log));
    REQUIRE(ready);
    std::istringstream words(ready->substr(6));
    std::string broker_bound, pool_bound;
    words >> broker_bound >> pool_bound;
    const std::string broker = on_host(broker_bound, lab.address("a")), pool = on_host(pool_bound, lab.address("a"));

    // The task is running on a worker: asked until the pool says so (its worker starts it a moment later).
    std::string json;
    const auto until = std::chrono::steady_clock::now() + 60s;
    do {
        const std::string out = files.dir + "/status.json";
        std::filesystem::remove(out);
        REQUIRE(run_status(lab, "b", {"--connect", broker, "--connect", pool, "--authkey-file", key, "--json"}, out) ==
                0);
        json = log_of(out);
    } while (!contains(json, "\"in_flight\":1") && std::chrono::steady_clock::now() < until);
    INFO(json);
    CHECK(contains(json, "{\"endpoints\":[\"" + broker + "\",\"" + pool + "\"],\"broker\":{"));
    // The broker's objects: the queue with its 3 items, the manager and its dict of 2 entries.
    CHECK(contains(json, "{\"kind\":\"Queue\","));
    CHECK(contains(json, "\"depth\":3,"));
    CHECK(contains(json, "{\"kind\":\"Manager\","));
    CHECK(contains(json, "{\"kind\":\"DictProxy\","));
    CHECK(contains(json, "\"entries\":2"));
    // Its processes by name: the program itself and its pool's workers.
    CHECK(contains(json, "\"name\":\"MainProcess\""));
    CHECK(contains(json, "\"name\":\"ForkPoolWorker-1\""));
    // The pool, as its dispatcher tells it: 2 fork workers, one running the task.
    CHECK(contains(json, "\"processes\":[{\"pid\":"));
    CHECK(contains(json, "\"method\":\"fork\",\"processes\":2,"));
    CHECK(contains(json, "\"in_flight\":1,"));
    CHECK(contains(json, "\"name\":\"ForkPoolWorker-2\""));

    // As a table too.
    const std::string table = files.dir + "/status.txt";
    REQUIRE(run_status(lab, "b", {"--connect", broker, "--connect", pool, "--authkey-file", key}, table) == 0);
    const std::string text = log_of(table);
    INFO(text);
    CHECK(contains(text, "zmp program at " + broker + " " + pool));
    CHECK(contains(text, "pool of MainProcess (pid "));
    CHECK(contains(text, "ForkPoolWorker-1"));

    // Another key: refused by each endpoint, with an AuthenticationError, at once.
    for (const std::string& endpoint : {broker, pool}) {
        const std::string refused = files.dir + "/refused.txt";
        std::filesystem::remove(refused);
        const auto start = std::chrono::steady_clock::now();
        CHECK(run_status(lab, "b", {"--connect", endpoint, "--authkey-file", wrong, "--json"}, refused) == 1);
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        INFO(log_of(refused));
        CHECK(line_in(refused, "zmp-status: AuthenticationError: ", 1s));
        // Machines are shared and noisy: reported, not asserted.
        std::printf("zmp-status with a wrong key at %s: refused after %.2f s\n", endpoint.c_str(), seconds);
    }
    // The program was not disturbed: it finishes its task and exits 0.
    std::ofstream(stop).put('\n');
    int status = 0;
    REQUIRE(::waitpid(program, &status, 0) == program);
    CHECK((WIFEXITED(status) && WEXITSTATUS(status) == 0));
}
