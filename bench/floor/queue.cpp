// The floor under the Queue rows: raw ZeroMQ PUSH/PULL over ipc between forked processes, items
// as single frames, no serialisation, no acknowledgements, measured as bench/zmp/queue.cpp is.
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>
#include <zmq.hpp>

#include "bench.hpp"

namespace {

std::string endpoint(const char* what, pid_t owner, int i) {
    return "ipc:///tmp/zmp-floor-" + std::string(what) + "-" + std::to_string(owner) + "-" + std::to_string(i);
}

// One PUSH child sends a warm-up of 1000 items, then 3 rounds of `full` items of `size` bytes;
// this process PULLs them. Items per second, median of the 3 rounds. A sender stays until its
// receiver has everything: closing at the receiver's high-water mark can lose the stream's tail
// (docs/design.md, Upstream behaviour zmp works around).
double pushpull_rate(const bench::Options& opt, std::size_t size, int full) {
    const int per_round = opt.n(full), warm = 1000, rounds = 3;
    const std::string address = endpoint("pp", ::getpid(), 0);
    int release[2];
    if (::pipe(release) != 0) return 0;
    zmq::context_t ctx;
    zmq::socket_t pull(ctx, zmq::socket_type::pull);
    pull.bind(address);
    const pid_t pid = ::fork();
    if (pid == 0) {
        zmq::context_t child_ctx;
        zmq::socket_t push(child_ctx, zmq::socket_type::push);
        push.connect(address);
        const std::string item(size, 'x');
        for (int i = 0; i < warm + rounds * per_round; ++i) push.send(zmq::buffer(item), zmq::send_flags::none);
        char byte;
        _exit(::read(release[0], &byte, 1) == 1 ? 0 : 1);
    }
    zmq::message_t m;
    for (int i = 0; i < warm; ++i) (void)pull.recv(m);
    std::vector<double> rates;
    for (int r = 0; r < rounds; ++r) {
        const auto start = bench::Clock::now();
        for (int i = 0; i < per_round; ++i) (void)pull.recv(m);
        rates.push_back(per_round / bench::seconds(bench::Clock::now() - start));
    }
    if (::write(release[1], "r", 1) != 1) return 0;
    ::waitpid(pid, nullptr, 0);
    ::unlink(address.c_str() + 6);
    ::close(release[0]);
    ::close(release[1]);
    return bench::median(rates);
}

// Four PUSH children, each with a socket to each of four PULL children, send `full` items of 16
// bytes in all (round robin, as one PUSH socket with four peers does), then an empty end frame on
// each socket; a PULL child stops after four end frames. From the go signal to the last count.
double pushpull_4x4_rate(const bench::Options& opt, int full) {
    constexpr int kSide = 4;
    const int per_producer = opt.n(full) / kSide;
    std::vector<std::string> addresses;
    for (int c = 0; c < kSide; ++c) addresses.push_back(endpoint("pp4", ::getpid(), c));
    int go[2], ready[2], done[2], release[2];
    if (::pipe(go) != 0 || ::pipe(ready) != 0 || ::pipe(done) != 0 || ::pipe(release) != 0) return 0;
    std::vector<pid_t> pids;
    for (int c = 0; c < kSide; ++c) {
        const pid_t pid = ::fork();
        if (pid == 0) {
            zmq::context_t ctx;
            zmq::socket_t pull(ctx, zmq::socket_type::pull);
            pull.bind(addresses[c]);
            if (::write(ready[1], "r", 1) != 1) _exit(1);
            long count = 0;
            for (int ends = 0; ends < kSide;) {
                zmq::message_t m;
                (void)pull.recv(m);
                if (m.size() == 0)
                    ++ends;
                else
                    ++count;
            }
            _exit(::write(done[1], &count, sizeof count) == sizeof count ? 0 : 1);
        }
        pids.push_back(pid);
    }
    for (int c = 0; c < kSide; ++c) {  // every PULL is bound before any PUSH connects
        char byte;
        if (::read(ready[0], &byte, 1) != 1) return 0;
    }
    for (int p = 0; p < kSide; ++p) {
        const pid_t pid = ::fork();
        if (pid == 0) {
            zmq::context_t ctx;
            std::vector<zmq::socket_t> pushes;
            for (int c = 0; c < kSide; ++c) {
                pushes.emplace_back(ctx, zmq::socket_type::push);
                pushes.back().connect(addresses[c]);
            }
            char byte;
            if (::read(go[0], &byte, 1) != 1) _exit(1);
            const std::string item(16, 'x');
            for (int i = 0; i < per_producer; ++i) pushes[i % kSide].send(zmq::buffer(item), zmq::send_flags::none);
            for (auto& s : pushes) s.send(zmq::const_buffer("", 0), zmq::send_flags::none);
            _exit(::read(release[0], &byte, 1) == 1 ? 0 : 1);  // stay until every PULL has it all
        }
        pids.push_back(pid);
    }
    const auto start = bench::Clock::now();
    if (::write(go[1], "gggg", kSide) != kSide) return 0;
    long total = 0;
    for (int c = 0; c < kSide; ++c) {
        long count = 0;
        if (::read(done[0], &count, sizeof count) != sizeof count) return 0;
        total += count;
    }
    const double seconds = bench::seconds(bench::Clock::now() - start);
    if (::write(release[1], "rrrr", kSide) != kSide) return 0;
    for (pid_t pid : pids) ::waitpid(pid, nullptr, 0);
    for (const auto& a : addresses) ::unlink(a.c_str() + 6);
    for (int fd : {go[0], go[1], ready[0], ready[1], done[0], done[1], release[0], release[1]}) ::close(fd);
    return total == kSide * per_producer ? total / seconds : 0;
}

}  // namespace

// The same item counts as zmp's rows (bench/zmp/queue.cpp).
ZMP_BENCH("queue.thr.16B", "ops/s") { return pushpull_rate(opt, 16, 1000000); }
ZMP_BENCH("queue.thr.1KiB", "ops/s") { return pushpull_rate(opt, 1024, 250000); }
ZMP_BENCH("queue.thr.4x4", "ops/s") { return pushpull_4x4_rate(opt, 1000000); }
