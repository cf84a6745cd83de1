// zmp's figures for the Pool rows: map of tiny tasks (chunksize 1 and Python's default),
// apply_async().get() round trip, and the speedup of a CPU-bound map over serial.
#include <numeric>
#include <vector>

#include "bench.hpp"
#include "zmp/pool.hpp"

namespace {

long twice(long x) { return 2 * x; }

bool is_prime(long n) {
    if (n < 2) return false;
    if (n % 2 == 0) return n == 2;
    for (long d = 3; d * d <= n; d += 2)
        if (n % d == 0) return false;
    return true;
}
long count_block(long start) {
    long count = 0;
    for (long n = start; n < start + 20000; ++n) count += is_prime(n) ? 1 : 0;
    return count;
}

std::vector<long> tiny_inputs(const bench::Options& opt) {
    std::vector<long> input(static_cast<std::size_t>(opt.n(200000)));
    std::iota(input.begin(), input.end(), 0L);
    return input;
}

double map_rate(const bench::Options& opt, std::optional<std::size_t> chunksize) {
    zmp::Pool pool(2);
    const auto input = tiny_inputs(opt);
    (void)pool.map(twice, std::vector<long>(1000, 1), 1);  // workers up and warm
    std::vector<double> rates;
    for (int round = 0; round < 3; ++round) {
        const auto start = bench::Clock::now();
        auto out = pool.map(twice, input, {.chunksize = chunksize});
        rates.push_back(static_cast<double>(out.size()) / bench::seconds(bench::Clock::now() - start));
    }
    return bench::median(rates);
}

}  // namespace

ZMP_BENCH("pool.map.chunk1", "ops/s") { return map_rate(opt, 1); }
ZMP_BENCH("pool.map.default", "ops/s") { return map_rate(opt, std::nullopt); }

ZMP_BENCH("pool.apply.rtt", "us") {
    zmp::Pool pool(2);
    for (int i = 0; i < 100; ++i) (void)pool.apply_async(twice, 1L).get();
    return 1e6 * bench::seconds_per_op(5, opt.n(2000), [&] { (void)pool.apply_async(twice, 1L).get(); });
}

ZMP_BENCH("pool.speedup.cpu", "x") {
    std::vector<long> blocks;
    for (long b = 0; b < (opt.quick ? 60 : 200); ++b) blocks.push_back(b * 20000);
    auto start = bench::Clock::now();
    long serial = 0;
    for (long b : blocks) serial += count_block(b);
    const double serial_time = bench::seconds(bench::Clock::now() - start);
    zmp::Pool pool(2);
    (void)pool.apply(count_block, 0L);
    start = bench::Clock::now();
    auto counts = pool.map(count_block, blocks, 1);
    const double parallel_time = bench::seconds(bench::Clock::now() - start);
    if (std::accumulate(counts.begin(), counts.end(), 0L) != serial) return 0;
    return serial_time / parallel_time;
}
