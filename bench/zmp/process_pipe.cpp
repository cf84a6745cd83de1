// zmp's figures for the foundation rows: process start+join, Pipe round trips, the codec.
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <new>
#include <string>
#include <vector>

#include "bench.hpp"
#include "zmp/context.hpp"
#include "zmp/pipe.hpp"
#include "zmp/process.hpp"
#include "zmp/transport/codec.hpp"

namespace {

double start_join_ms(const bench::Options& opt) {
    zmp::Process warm([] {});
    warm.start();
    warm.join();
    return 1e3 * bench::seconds_per_op(5, opt.n(40), [] {
               zmp::Process p([] {});
               p.start();
               p.join();
           });
}

// A child that echoes every byte message on `c` until EOF (it closes its copy of the other end).
zmp::Process start_echo(zmp::Connection c, zmp::Connection other) {
    zmp::Process echo([c, other]() mutable {
        other.close();
        try {
            for (;;) c.send_bytes(c.recv_bytes());
        } catch (const zmp::EOFError&) {
        }
    });
    echo.start();
    return echo;
}

// Pipes made while this lives carry their messages over the socket pair alone (ZMP_PIPE=socket):
// the path every Pipe took before the shared-memory channel, measured in the same run.
struct SocketPipes {
    explicit SocketPipes(bool on) : on_(on) {
        if (on_) ::setenv("ZMP_PIPE", "socket", 1);
    }
    ~SocketPipes() {
        if (on_) ::unsetenv("ZMP_PIPE");
    }
    bool on_;
};

// Round trip of `size` bytes to an echoing child and back, in microseconds.
double pipe_rtt_us(const bench::Options& opt, std::size_t size, int per_round, bool sockets = false) {
    SocketPipes mode(sockets);
    auto [here, there] = zmp::Pipe();
    zmp::Process echo = start_echo(there, here);
    there.close();
    const std::string payload(size, 'x');
    for (int i = 0; i < 10; ++i) {
        here.send_bytes(payload);
        (void)here.recv_bytes();
    }
    const double s = bench::seconds_per_op(5, opt.n(per_round), [&] {
        here.send_bytes(payload);
        (void)here.recv_bytes();
    });
    here.close();
    echo.join();
    return s * 1e6;
}

// The same with `pairs` pinger/echo pairs at once, more processes than cores (this machine has 2):
// the mean of the pairs' round trips, in microseconds. Spinning must not starve the peers.
double pipe_oversubscribed_us(const bench::Options& opt, int pairs, int per_round, bool sockets = false) {
    SocketPipes mode(sockets);
    void* page = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    auto* ready = new (page) std::atomic<int>(0);
    auto* results = reinterpret_cast<double*>(static_cast<char*>(page) + 64);
    std::vector<zmp::Process> processes;
    for (int i = 0; i < pairs; ++i) {
        auto [here, there] = zmp::Pipe();
        processes.push_back(start_echo(there, here));
        zmp::Process pinger([here, there, i, ready, results, pairs, &opt, per_round]() mutable {
            there.close();
            const std::string payload(1, 'x');
            for (int k = 0; k < 10; ++k) {
                here.send_bytes(payload);
                (void)here.recv_bytes();
            }
            ready->fetch_add(1);
            while (ready->load() < pairs) ::usleep(100);  // all pairs measure at the same time
            results[i] = 1e6 * bench::seconds_per_op(5, opt.n(per_round), [&] {
                             here.send_bytes(payload);
                             (void)here.recv_bytes();
                         });
        });
        pinger.start();
        processes.push_back(std::move(pinger));
        here.close();
        there.close();
    }
    for (auto& p : processes) p.join();
    double sum = 0;
    for (int i = 0; i < pairs; ++i) sum += results[i];
    ::munmap(page, 4096);
    return sum / pairs;
}

}  // namespace

ZMP_BENCH("process.start_join.fork", "ms") { return start_join_ms(opt); }
ZMP_BENCH("pipe.rtt.1B", "us") { return pipe_rtt_us(opt, 1, 5000); }
ZMP_BENCH("pipe.rtt.1KiB", "us") { return pipe_rtt_us(opt, 1024, 5000); }
ZMP_BENCH("pipe.rtt.1MiB", "us") { return pipe_rtt_us(opt, 1 << 20, 200); }
ZMP_BENCH("pipe.rtt.1B.oversub", "us") { return pipe_oversubscribed_us(opt, 4, 2000); }
ZMP_BENCH("pipe.rtt.1B.socket", "us") { return pipe_rtt_us(opt, 1, 5000, true); }
ZMP_BENCH("pipe.rtt.1KiB.socket", "us") { return pipe_rtt_us(opt, 1024, 5000, true); }
ZMP_BENCH("pipe.rtt.1MiB.socket", "us") { return pipe_rtt_us(opt, 1 << 20, 200, true); }
ZMP_BENCH("pipe.rtt.1B.oversub.socket", "us") { return pipe_oversubscribed_us(opt, 4, 2000, true); }

ZMP_BENCH("codec.int", "ns") {
    volatile long sink = 0;
    long i = 0;
    return 1e9 * bench::seconds_per_op(5, opt.n(1000000), [&] {
               auto buffer = zmp::transport::encode(++i);
               sink = sink + zmp::transport::decode_as<long>(buffer.data(), buffer.size());
           });
}

namespace {
void nothing() {}

double start_join_with_ms(const bench::Options& opt, zmp::StartMethod method, int full) {
    auto ctx = zmp::get_context(method);
    zmp::Process warm = ctx.Process(nothing);  // the fork server starts here, outside the timing
    warm.start();
    warm.join();
    return 1e3 * bench::seconds_per_op(5, opt.n(full), [&] {
               zmp::Process p = ctx.Process(nothing);
               p.start();
               p.join();
           });
}
}  // namespace

ZMP_BENCH("process.start_join.spawn", "ms") { return start_join_with_ms(opt, zmp::StartMethod::spawn, 10); }
ZMP_BENCH("process.start_join.forkserver", "ms") { return start_join_with_ms(opt, zmp::StartMethod::forkserver, 40); }
