// The README's demo: count the primes below a limit, first serially, then across every core,
// and print both times and the speedup.
#include <zmp/zmp.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <algorithm>
#include <vector>

namespace {

bool is_prime(long n) {
    if (n < 2) return false;
    if (n % 2 == 0) return n == 2;
    for (long d = 3; d * d <= n; d += 2)
        if (n % d == 0) return false;
    return true;
}

constexpr long kBlock = 10'000;

// Primes in blocks worker, worker+workers, ... of kBlock numbers below limit. Dealing the blocks
// round-robin gives every worker the same mix of small (cheap) and large (costly) numbers.
long count_primes(long worker, long workers, long limit) {
    long count = 0;
    for (long block = worker * kBlock; block < limit; block += workers * kBlock)
        for (long n = block; n < std::min(block + kBlock, limit); ++n) count += is_prime(n) ? 1 : 0;
    return count;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

int main(int argc, char** argv) {
    zmp::init(argc, argv);
    const long limit = argc > 1 ? std::atol(argv[1]) : 6'000'000;
    const int workers = zmp::cpu_count();
    std::printf("counting the primes below %ld\n", limit);

    auto start = std::chrono::steady_clock::now();
    const long serial = count_primes(0, 1, limit);
    const double serial_time = seconds_since(start);
    std::printf("serial:   %ld primes in %.2f s\n", serial, serial_time);

    start = std::chrono::steady_clock::now();
    auto [results, results_in] = zmp::Pipe(false);
    std::vector<zmp::Process> children;
    for (int w = 0; w < workers; ++w) {
        children.emplace_back([out = results_in, w, workers, limit]() mutable {
            out.send(count_primes(w, workers, limit));
        });
        children.back().start();
    }
    results_in.close();
    long parallel = 0;
    for (int w = 0; w < workers; ++w) parallel += results.recv<long>();
    for (auto& child : children) child.join();
    const double parallel_time = seconds_since(start);
    std::printf("parallel: %ld primes in %.2f s on %d processes\n", parallel, parallel_time, workers);
    std::printf("speedup:  %.2fx\n", serial_time / parallel_time);
    return parallel == serial ? 0 : 1;
}
