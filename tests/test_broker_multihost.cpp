// The broker across "hosts" (network namespaces, netlab.hpp): zmp-broker on host a, programs that
// join it from hosts b and c. A lock holder whose host is cut off (no FIN, no RST: packets just
// vanish) is found dead by heartbeat, and the next owner gets the lock with owner_died(); a
// program on another host with the wrong key is refused. Skipped, and reported as skipped, where
// namespaces cannot be made.
#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <thread>

#include "broker/protocol.hpp"
#include "lab_files.hpp"
#include "netlab.hpp"
#include "test_util.hpp"
#include "zmp/authkey.hpp"

using namespace std::chrono_literals;
using test_util::line_in;
using test_util::log_of;
using test_util::NetLab;

TEST_CASE("a lock held on a host that is cut off goes to a client on another host, with owner_died, within the bound") {
    NetLab lab({"a", "b", "c"});
    if (!lab) test_util::skip_test(lab.why());
    test_util::ScratchDir files("zmp-test-broker-hosts");
    const std::string key = files.key("authkey");
    const std::string broker_log = files.dir + "/a.log", holder_log = files.dir + "/c.log",
                      taker_log = files.dir + "/b.log";
    lab.spawn("a", {ZMP_BROKER_EXE, "tcp://*:6000", "--authkey-file", key}, broker_log);
    REQUIRE(line_in(broker_log, "zmp-broker: serving tcp://0.0.0.0:6000"));
    const std::string endpoint = "tcp://" + lab.address("a") + ":6000";

    // c makes a Lock, a Semaphore(1) and a Barrier(2), takes the first two, waits at the third.
    lab.spawn("c", {HELPER_remote_client, endpoint, key, "make"}, holder_log);
    const auto objects = line_in(holder_log, "objects ");
    REQUIRE(objects);
    REQUIRE(line_in(holder_log, "held"));
    // b receives their handles and waits for the lock.
    lab.spawn("b", {HELPER_remote_client, endpoint, key, "take", objects->substr(8)}, taker_log);
    REQUIRE(line_in(taker_log, "claimed"));
    std::this_thread::sleep_for(500ms);  // b's acquire is queued at the broker (not required: it only waits longer)

    const auto cut_at = std::chrono::steady_clock::now();
    REQUIRE(lab.cut("c"));
    const auto got = line_in(taker_log, "lock owner_died=", 120s);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - cut_at).count();
    INFO("b's log:\n" << log_of(taker_log) << "broker's log:\n" << log_of(broker_log));
    REQUIRE(got);
    CHECK(*got == "lock owner_died=1");
    CHECK(line_in(taker_log, "semaphore"));
    CHECK(line_in(taker_log, "barrier broken=") == std::optional<std::string>("barrier broken=1"));
    // The bound is kRemoteDeathBound; this machine may be loaded, so it is reported, not asserted.
    std::printf("lock handed over %.2f s after the cut (documented bound %.1f s)\n", seconds,
                std::chrono::duration<double>(zmp::detail::broker::kRemoteDeathBound).count());
}

TEST_CASE("a program on another host with the wrong authkey is refused by the broker") {
    NetLab lab({"a", "b"});
    if (!lab) test_util::skip_test(lab.why());
    test_util::ScratchDir files("zmp-test-broker-hosts");
    const std::string key = files.key("authkey"), wrong = files.key("wrong");
    const std::string broker_log = files.dir + "/a.log", client_log = files.dir + "/b.log";
    lab.spawn("a", {ZMP_BROKER_EXE, "tcp://*:6000", "--authkey-file", key}, broker_log);
    REQUIRE(line_in(broker_log, "zmp-broker: serving"));
    const std::string endpoint = "tcp://" + lab.address("a") + ":6000";
    const pid_t client = lab.spawn("b", {HELPER_remote_client, endpoint, wrong, "refused"}, client_log);
    int status = 0;
    ::waitpid(client, &status, 0);
    INFO(log_of(client_log));
    CHECK((WIFEXITED(status) && WEXITSTATUS(status) == 0));
    CHECK(line_in(client_log, "refused"));
    // The broker logged the refusal (a warning record).
    const auto refusal = line_in(broker_log, "broker: zmp: refused tcp peer", 60s, true);
    REQUIRE(refusal);
    CHECK(refusal->starts_with("[WARNING/"));
}
