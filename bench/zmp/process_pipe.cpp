// zmp's figures for the foundation rows: process start+join, Pipe round trips, the codec.
#include <string>

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

// Round trip of `size` bytes to an echoing child and back, in microseconds.
double pipe_rtt_us(const bench::Options& opt, std::size_t size, int per_round) {
    auto [here, there] = zmp::Pipe();
    zmp::Process echo([c = there, h = here]() mutable {
        h.close();
        try {
            for (;;) c.send_bytes(c.recv_bytes());
        } catch (const zmp::EOFError&) {
        }
    });
    echo.start();
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

}  // namespace

ZMP_BENCH("process.start_join.fork", "ms") { return start_join_ms(opt); }
ZMP_BENCH("pipe.rtt.1B", "us") { return pipe_rtt_us(opt, 1, 5000); }
ZMP_BENCH("pipe.rtt.1KiB", "us") { return pipe_rtt_us(opt, 1024, 5000); }
ZMP_BENCH("pipe.rtt.1MiB", "us") { return pipe_rtt_us(opt, 1 << 20, 200); }

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
