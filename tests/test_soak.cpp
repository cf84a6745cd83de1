// Soak: long runs of the everyday operations, each checking that the root gives back what it
// took. After a warm-up (which makes the run's one-time things: its broker, the ZeroMQ context,
// the first arena segments), a run must end with the root's open descriptors and the run's
// /dev/shm entries back at their starting counts, and the root's RSS within kRssBoundKib of its
// start. Label soak: not part of ./dev test; run with `ctest --test-dir build/test -L soak`
// (README, Tests). Each prints its figures on stdout ("soak: ...").
#include <dirent.h>
#include <signal.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "test_util.hpp"
#include "zmp/pool.hpp"
#include "zmp/process.hpp"
#include "zmp/queue.hpp"
#include "zmp/sharedctypes.hpp"
#include "zmp/sync.hpp"

using namespace std::chrono_literals;

namespace {

using test_util::rss_kib;

// What a soak run may keep of the root's resident memory: allocator caches and the pages of
// arenas it touched; a leak of a few dozen bytes per operation would exceed it.
constexpr long kRssBoundKib = 32 * 1024;


long open_fds() {
    long count = 0;
    if (DIR* dir = ::opendir("/proc/self/fd")) {
        while (dirent* entry = ::readdir(dir))
            if (entry->d_name[0] != '.') ++count;
        ::closedir(dir);
        --count;  // the directory's own descriptor
    }
    return count;
}

// This run's segments: every name starts with the root's pid.
long run_segments() {
    return static_cast<long>(test_util::segments_starting("zmp-" + std::to_string(::getpid()) + "-").size());
}

// Test set-up only: waits until cond() holds, at most `limit`.
template <class F>
bool eventually(F cond, std::chrono::seconds limit = 60s) {
    const auto end = std::chrono::steady_clock::now() + limit;
    while (!cond()) {
        if (std::chrono::steady_clock::now() > end) return false;
        std::this_thread::sleep_for(5ms);
    }
    return true;
}

struct Usage {
    long fds = open_fds();
    long segments = run_segments();
    long rss = rss_kib();
};

// Checks the root's usage against `before` (descriptors and segments are released asynchronously
// by the broker and by exiting children: they are given time to come back) and prints both.
void check_returned(const char* what, const Usage& before) {
    eventually([&] { return open_fds() <= before.fds && run_segments() <= before.segments; });
    const Usage after;
    std::printf("soak: %s: fds %ld -> %ld, /dev/shm entries %ld -> %ld, RSS %ld -> %ld KiB (%+ld)\n", what, before.fds,
                after.fds, before.segments, after.segments, before.rss, after.rss, after.rss - before.rss);
    std::fflush(stdout);
    CHECK(after.fds == before.fds);
    CHECK(after.segments == before.segments);
    CHECK(after.rss - before.rss < kRssBoundKib);
}

// ---- the pool: a worker killed every 20,000 tasks ------------------------------------------------

constexpr int kRound = 20000;
// Set by the test before the pool exists, so every worker (forked from the root) inherits it.
zmp::RawValue<int>* victim = nullptr;

// The task in the middle of each round names its worker as the victim (once a round) and waits to
// be killed; run again after the kill (max_retries), it sees the victim taken and just returns.
int soak_task(int x) {
    if (x % kRound == kRound / 2) {
        int expected = 0;
        const int me = static_cast<int>(::getpid());
        if (victim->compare_exchange(expected, me)) {
            for (int i = 0; i < 600 && victim->load() == me; ++i) std::this_thread::sleep_for(100ms);
        }
    }
    return x ^ 0x5a5a;
}

}  // namespace

TEST_CASE("soak: 1,000,000 queue put/get pairs between two processes") {
    constexpr int kItems = 1000000;
    {
        zmp::Queue<int> warm;
        for (int i = 0; i < 1000; ++i) warm.put(i);
        for (int i = 0; i < 1000; ++i) REQUIRE(warm.get(60s) == i);
    }
    const Usage before;
    {
        zmp::Queue<int> queue(10000);
        zmp::Process producer([queue] {
            for (int i = 0; i < kItems; ++i) queue.put(i);
        });
        producer.start();
        long mismatches = 0;
        for (int i = 0; i < kItems; ++i)
            if (queue.get(60s) != i) ++mismatches;
        producer.join();
        CHECK(producer.exitcode() == 0);
        CHECK(mismatches == 0);
        CHECK(queue.empty());
    }
    check_returned("1,000,000 queue put/get", before);
}

TEST_CASE("soak: 200,000 pool tasks with a worker SIGKILLed every 20,000") {
    zmp::RawValue<int> shared_victim(0);
    victim = &shared_victim;
    {
        zmp::Pool warm({.processes = 2, .context = zmp::StartMethod::fork});
        REQUIRE(warm.map(soak_task, std::vector<int>{1, 2, 3}) == std::vector<int>{1 ^ 0x5a5a, 2 ^ 0x5a5a, 3 ^ 0x5a5a});
    }
    const Usage before;
    {
        zmp::Pool pool({.processes = 2, .context = zmp::StartMethod::fork, .max_retries = 1});
        long wrong = 0;
        int killed = 0;
        for (int round = 0; round < 10; ++round) {
            shared_victim.store(0);
            std::vector<int> input(kRound);
            for (int i = 0; i < kRound; ++i) input[i] = round * kRound + i;
            auto results = pool.map_async(soak_task, input, {.chunksize = 100});
            REQUIRE(eventually([&] { return shared_victim.load() > 0; }));
            const pid_t pid = shared_victim.load();
            if (::kill(pid, SIGKILL) == 0) ++killed;
            shared_victim.store(-1);
            const std::vector<int> values = results.get(600s);
            REQUIRE(values.size() == input.size());
            for (std::size_t i = 0; i < values.size(); ++i)
                if (values[i] != (input[i] ^ 0x5a5a)) ++wrong;
        }
        CHECK(killed == 10);
        CHECK(wrong == 0);
    }
    victim = nullptr;
    check_returned("200,000 pool tasks, 10 workers killed", before);
}

TEST_CASE("soak: 2,000 processes started and joined") {
    for (int i = 0; i < 20; ++i) {
        zmp::Process p([] {});
        p.start();
        p.join();
    }
    const Usage before;
    int failed = 0;
    for (int i = 0; i < 2000; ++i) {
        zmp::Process p([i] { zmp::exit(i % 100); });
        p.start();
        p.join();
        if (p.exitcode() != i % 100) ++failed;
    }
    CHECK(failed == 0);
    check_returned("2,000 Process start/join", before);
}

TEST_CASE("soak: 10,000 lock hand-offs between two processes") {
    // Two locks used as Python allows (any process may release): each side blocks in acquire()
    // until the other releases, so every turn hands a lock from one process to the other.
    constexpr int kRounds = 5000;  // two hand-offs a round
    {
        zmp::Lock warm;
        warm.acquire();
        warm.release();
    }
    const Usage before;
    {
        zmp::Lock ping;
        zmp::Lock pong;
        ping.acquire();
        pong.acquire();
        zmp::Process partner([ping, pong] {
            for (int i = 0; i < kRounds; ++i) {
                if (!ping.acquire(60s)) zmp::exit(1);
                pong.release();
            }
        });
        partner.start();
        int missed = 0;
        for (int i = 0; i < kRounds; ++i) {
            ping.release();
            if (!pong.acquire(60s)) ++missed;
        }
        partner.join();
        CHECK(partner.exitcode() == 0);
        CHECK(missed == 0);
    }
    check_returned("10,000 lock hand-offs", before);
}
