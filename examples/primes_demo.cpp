// The README's demo: count the primes below a limit, first serially, then with a zmp::Pool on
// every core (with a progress bar when stderr is a terminal), and print both times and the
// speedup.
#include <zmp/zmp.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <vector>

namespace {

bool is_prime(long n) {
    if (n < 2) return false;
    if (n % 2 == 0) return n == 2;
    for (long d = 3; d * d <= n; d += 2)
        if (n % d == 0) return false;
    return true;
}

// The primes in [start, end): one task of the pool.
long count_range(long start, long end) {
    long count = 0;
    for (long n = start; n < end; ++n) count += is_prime(n) ? 1 : 0;
    return count;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

int main(int argc, char** argv) {
    zmp::init(argc, argv);
    const long limit = argc > 1 ? std::atol(argv[1]) : 6'000'000;
    std::printf("counting the primes below %ld\n", limit);

    auto start = std::chrono::steady_clock::now();
    const long serial = count_range(0, limit);
    const double serial_time = seconds_since(start);
    std::printf("serial:   %ld primes in %.2f s\n", serial, serial_time);

    // Blocks of 20,000 numbers: small enough that the workers finish together.
    std::vector<std::tuple<long, long>> blocks;
    for (long from = 0; from < limit; from += 20'000) blocks.emplace_back(from, std::min(from + 20'000, limit));
    start = std::chrono::steady_clock::now();
    zmp::Pool pool;  // one worker per core
    auto counts = pool.starmap(count_range, blocks, {.chunksize = 1, .progress_bar = true});
    const long parallel = std::accumulate(counts.begin(), counts.end(), 0L);
    const double parallel_time = seconds_since(start);
    std::printf("parallel: %ld primes in %.2f s on %d processes\n", parallel, parallel_time, pool.processes());
    std::printf("speedup:  %.2fx\n", serial_time / parallel_time);
    return parallel == serial ? 0 : 1;
}
