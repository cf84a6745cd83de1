// zmp's figures for the Queue rows: items per second from one producer process to one consumer
// process (16 B and 1 KiB items), and from four producers to four consumers (16 B items).
#include <string>
#include <vector>

#include "bench.hpp"
#include "zmp/process.hpp"
#include "zmp/queue.hpp"
#include "zmp/sync.hpp"

namespace {

// A child puts `per_round` items of `size` bytes each time this process releases `go`; this
// process gets them. Items per second, median of 3 rounds, after a warm-up of 1000 items.
double one_to_one_rate(const bench::Options& opt, std::size_t size, int full) {
    const int per_round = opt.n(full), warm = 1000, rounds = 3;
    zmp::Queue<std::string> q;
    zmp::Semaphore go(0);
    zmp::Process producer([=] {
        const std::string item(size, 'x');
        for (int i = 0; i < warm; ++i) q.put(item);
        for (int r = 0; r < rounds; ++r) {
            go.acquire();
            for (int i = 0; i < per_round; ++i) q.put(item);
        }
    });
    producer.start();
    for (int i = 0; i < warm; ++i) (void)q.get();
    std::vector<double> rates;
    for (int r = 0; r < rounds; ++r) {
        const auto start = bench::Clock::now();
        go.release();
        for (int i = 0; i < per_round; ++i) (void)q.get();
        rates.push_back(per_round / bench::seconds(bench::Clock::now() - start));
    }
    producer.join();
    return bench::median(rates);
}

// Four producer processes put `full` items of 16 bytes in all; four consumer processes get them
// until their sentinel (an empty item, put once the producers have exited). Items per second
// from the go signal to the last consumer's exit.
double four_by_four_rate(const bench::Options& opt, int full) {
    constexpr int kSide = 4;
    const int per_producer = opt.n(full) / kSide;
    zmp::Queue<std::string> q;
    zmp::Semaphore go(0);
    std::vector<zmp::Process> producers, consumers;
    for (int c = 0; c < kSide; ++c) {
        consumers.emplace_back([q] {
            while (!q.get().empty()) {
            }
        });
        consumers.back().start();
    }
    for (int p = 0; p < kSide; ++p) {
        producers.emplace_back([=] {
            const std::string item(16, 'x');
            go.acquire();
            for (int i = 0; i < per_producer; ++i) q.put(item);
        });
        producers.back().start();
    }
    const auto start = bench::Clock::now();
    for (int p = 0; p < kSide; ++p) go.release();
    for (auto& p : producers) p.join();
    for (int c = 0; c < kSide; ++c) q.put(std::string());
    for (auto& c : consumers) c.join();
    return kSide * per_producer / bench::seconds(bench::Clock::now() - start);
}

}  // namespace

// The floor (bench/floor/queue.cpp) moves the same counts; Python a tenth of them, which take it
// as long as these take zmp.
ZMP_BENCH("queue.thr.16B", "ops/s") { return one_to_one_rate(opt, 16, 1000000); }
ZMP_BENCH("queue.thr.1KiB", "ops/s") { return one_to_one_rate(opt, 1024, 250000); }
ZMP_BENCH("queue.thr.4x4", "ops/s") { return four_by_four_rate(opt, 1000000); }
