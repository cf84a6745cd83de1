// zmp's figure for log.record: info records logged in a child process, each reaching a handler in
// the root that counts and discards it, per second, under load (a child logging as fast as it can).
#include <atomic>
#include <vector>

#include "bench.hpp"
#include "zmp/logging.hpp"
#include "zmp/process.hpp"
#include "zmp/sync.hpp"

// A child logs `per_round` records "record <i> of bench" each time this process releases `go`;
// this process's handler counts them. Records per second from the release to the last one
// counted, median of 3 rounds, after a warm-up of 1000.
ZMP_BENCH("log.record", "ops/s") {
    const int per_round = opt.n(200000), warm = 1000, rounds = 3;
    std::atomic<long> counted{0};
    std::atomic<long> target{warm};
    zmp::CallbackHandler counter([&](const zmp::LogRecord&) {
        if (counted.fetch_add(1, std::memory_order_relaxed) + 1 >= target.load(std::memory_order_relaxed))
            counted.notify_all();
    });
    auto& log = zmp::get_logger();
    log.set_level(zmp::LogLevel::info);
    log.add_handler(counter);
    auto wait_for_target = [&] {
        for (long seen = counted.load(); seen < target.load(); seen = counted.load()) counted.wait(seen);
    };
    zmp::Semaphore go(0);
    zmp::Process producer([=] {
        auto& child_log = zmp::get_logger();
        for (int i = 0; i < warm; ++i) child_log.info("record {} of {}", i, "bench");
        for (int r = 0; r < rounds; ++r) {
            go.acquire();
            for (int i = 0; i < per_round; ++i) child_log.info("record {} of {}", i, "bench");
        }
    });
    producer.start();
    wait_for_target();
    std::vector<double> rates;
    for (int r = 0; r < rounds; ++r) {
        target += per_round;
        const auto start = bench::Clock::now();
        go.release();
        wait_for_target();
        rates.push_back(per_round / bench::seconds(bench::Clock::now() - start));
    }
    producer.join();
    log.remove_handler(counter);
    return bench::median(rates);
}
