// The Pool rows again with workers joined over tcp + CURVE on loopback (PoolOptions::bind, two
// workers forked from this binary that join as a remote host's would): what the network path
// costs beside the local socket pairs of pool.map.chunk1 and pool.apply.rtt.
#include <chrono>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "bench.hpp"
#include "zmp/pool.hpp"
#include "zmp/worker.hpp"

namespace {

long twice_tcp(long x) { return 2 * x; }

void join_and_serve(std::string endpoint, zmp::Authkey key) {
    zmp::exit(zmp::join_pool({.connect = endpoint, .authkey = key}));
}

// A pool with no local workers and two joined ones; they leave when it closes.
struct TcpPool {
    zmp::Authkey key = zmp::generate_authkey();
    zmp::Pool pool{zmp::PoolOptions{.processes = 0, .bind = "tcp://127.0.0.1:0", .authkey = key}};
    std::vector<zmp::Process> workers;
    TcpPool() {
        for (int i = 0; i < 2; ++i) {
            workers.push_back(zmp::get_context(zmp::StartMethod::fork).Process(join_and_serve, pool.endpoint(), key));
            workers.back().start();
        }
        while (pool.processes() < 2) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    ~TcpPool() {
        pool.close();
        pool.join();
        for (auto& w : workers) w.join();
    }
};

}  // namespace

ZMP_BENCH("pool.map.chunk1.tcp", "ops/s") {
    TcpPool tcp;
    std::vector<long> input(static_cast<std::size_t>(opt.n(200000)));
    std::iota(input.begin(), input.end(), 0L);
    (void)tcp.pool.map(twice_tcp, std::vector<long>(1000, 1), 1);  // warm
    std::vector<double> rates;
    for (int round = 0; round < 3; ++round) {
        const auto start = bench::Clock::now();
        auto out = tcp.pool.map(twice_tcp, input, 1);
        rates.push_back(static_cast<double>(out.size()) / bench::seconds(bench::Clock::now() - start));
    }
    return bench::median(rates);
}

ZMP_BENCH("pool.apply.rtt.tcp", "us") {
    TcpPool tcp;
    for (int i = 0; i < 100; ++i) (void)tcp.pool.apply_async(twice_tcp, 1L).get();
    return 1e6 * bench::seconds_per_op(5, opt.n(2000), [&] { (void)tcp.pool.apply_async(twice_tcp, 1L).get(); });
}
