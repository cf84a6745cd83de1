// zmp's figures for shared values: Python's `with v.get_lock(): v.value += 1`, alone and with two
// processes contending, and the lock-free fetch_add that Python lacks.
#include <mutex>
#include <optional>
#include <vector>

#include "bench.hpp"
#include "zmp/pipe.hpp"
#include "zmp/process.hpp"
#include "zmp/sharedctypes.hpp"

namespace {

void locked_increment(const zmp::Value<long>& v) {
    std::lock_guard guard(v.get_lock());
    v.set(v.value() + 1);
}

// Nanoseconds per operation while this process and one child each run `per_round` of them at
// once: the child is started (and warmed) before the clock runs, and reports each round's end.
template <class Op>
double two_processes_ns(int per_round, Op op) {
    auto [here, there] = zmp::Pipe();
    zmp::Process partner([c = there, h = here, per_round, op]() mutable {
        h.close();
        while (c.recv<bool>()) {
            for (int i = 0; i < per_round; ++i) op();
            c.send(true);
        }
    });
    partner.start();
    there.close();
    std::vector<double> samples;
    for (int round = 0; round < 6; ++round) {
        auto start = bench::Clock::now();
        here.send(true);
        for (int i = 0; i < per_round; ++i) op();
        (void)here.recv<bool>();
        if (round > 0) samples.push_back(bench::seconds(bench::Clock::now() - start) / (2.0 * per_round));
    }
    here.send(false);
    partner.join();
    return 1e9 * bench::median(samples);
}

}  // namespace

ZMP_BENCH("value.incr.1p", "ns") {
    zmp::Value<long> v(0);
    return 1e9 * bench::seconds_per_op(5, opt.n(2000000), [&] { locked_increment(v); });
}

ZMP_BENCH("value.incr.2p", "ns") {
    zmp::Value<long> v(0);
    return two_processes_ns(opt.n(1000000), [v] { locked_increment(v); });
}

ZMP_BENCH("value.fetch_add", "ns") {
    zmp::Value<long> v(0);
    return 1e9 * bench::seconds_per_op(5, opt.n(5000000), [&] { v.fetch_add(1); });
}

ZMP_BENCH("value.fetch_add.2p", "ns") {
    zmp::Value<long> v(0);
    return two_processes_ns(opt.n(2000000), [v] { v.fetch_add(1); });
}
