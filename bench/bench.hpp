#pragma once
// A tiny benchmark registry shared by zmp_bench (zmp's figures) and floor_bench (the raw floors):
// each row is a function returning one figure in the row's unit; the runner (bench/run.py) calls
// `<binary> <row> [--quick]` and reads one JSON line back.
//
//     ZMP_BENCH("pipe.rtt.1B", "us") { ...; return median_us; }

#include <algorithm>
#include <chrono>
#include <functional>
#include <string>
#include <vector>

namespace bench {

struct Options {
    bool quick = false;
    /// Scales an iteration count down in quick mode.
    int n(int full) const { return quick ? std::max(1, full / 5) : full; }
};

using Fn = double (*)(const Options&);

struct Row {
    const char* name;
    const char* unit;
    Fn fn;
};

std::vector<Row>& registry();

struct Registrar {
    Registrar(const char* name, const char* unit, Fn fn) { registry().push_back({name, unit, fn}); }
};

using Clock = std::chrono::steady_clock;

inline double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

inline double median(std::vector<double> values) {
    std::sort(values.begin(), values.end());
    const std::size_t n = values.size();
    if (n == 0) return 0;
    return n % 2 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

/// Median over `rounds` of (time for `per_round` calls of f) / per_round, in seconds.
template <class F>
double seconds_per_op(int rounds, int per_round, F&& f) {
    std::vector<double> samples;
    for (int r = 0; r < rounds; ++r) {
        auto start = Clock::now();
        for (int i = 0; i < per_round; ++i) f();
        samples.push_back(seconds(Clock::now() - start) / per_round);
    }
    return median(samples);
}

}  // namespace bench

#define ZMP_BENCH_CAT2(a, b) a##b
#define ZMP_BENCH_CAT(a, b) ZMP_BENCH_CAT2(a, b)
#define ZMP_BENCH(name, unit)                                                                                     \
    static double ZMP_BENCH_CAT(bench_fn_, __LINE__)(const bench::Options&);                                      \
    static bench::Registrar ZMP_BENCH_CAT(bench_reg_, __LINE__)(name, unit, &ZMP_BENCH_CAT(bench_fn_, __LINE__)); \
    static double ZMP_BENCH_CAT(bench_fn_, __LINE__)([[maybe_unused]] const bench::Options& opt)
