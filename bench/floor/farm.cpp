// The raw floor of a task farm on this host: a parent and forked workers over socketpairs, tasks
// f(i) = 2i as plain 8-byte integers — no framing, no serialisation, no bookkeeping. Results are
// read as they come, in bulk, and every result read lets one more message go out.
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <vector>

#include "bench.hpp"

namespace {

bool read_all(int fd, void* p, std::size_t n) {
    auto* c = static_cast<char*>(p);
    while (n > 0) {
        ssize_t r = ::read(fd, c, n);
        if (r <= 0) return false;
        c += r;
        n -= static_cast<std::size_t>(r);
    }
    return true;
}
void write_all(int fd, const void* p, std::size_t n) {
    auto* c = static_cast<const char*>(p);
    while (n > 0) {
        ssize_t w = ::write(fd, c, n);
        if (w <= 0) _exit(1);
        c += w;
        n -= static_cast<std::size_t>(w);
    }
}

// Tasks per second: `workers` workers, `per_message` tasks per message, up to `window`
// messages in flight per worker.
double farm_rate(int workers, long total, long per_message, long window) {
    std::vector<int> ends(static_cast<std::size_t>(workers));
    std::vector<pid_t> pids(static_cast<std::size_t>(workers));
    const std::size_t message = static_cast<std::size_t>(per_message) * sizeof(long);
    for (int w = 0; w < workers; ++w) {
        int fds[2];
        ::socketpair(AF_UNIX, SOCK_STREAM, 0, fds);
        pids[w] = ::fork();
        if (pids[w] == 0) {
            for (int other = 0; other < w; ++other) ::close(ends[other]);
            ::close(fds[0]);
            std::vector<long> batch(static_cast<std::size_t>(per_message));
            while (read_all(fds[1], batch.data(), message)) {
                for (long& x : batch) x *= 2;
                write_all(fds[1], batch.data(), message);
            }
            _exit(0);
        }
        ::close(fds[1]);
        ends[w] = fds[0];
    }
    const long messages = total / per_message;
    std::vector<long> out(static_cast<std::size_t>(per_message * window), 1);
    std::vector<char> in(message * static_cast<std::size_t>(window));
    std::vector<std::size_t> partial(static_cast<std::size_t>(workers), 0);
    long sent = 0, received = 0;
    const auto start = bench::Clock::now();
    for (int w = 0; w < workers; ++w) {
        const long n = std::min(window, messages - sent);
        if (n > 0) write_all(ends[w], out.data(), static_cast<std::size_t>(n) * message);
        sent += n;
    }
    std::vector<pollfd> fds;
    for (int w = 0; w < workers; ++w) fds.push_back({ends[w], POLLIN, 0});
    while (received < messages) {
        ::poll(fds.data(), fds.size(), -1);
        for (int w = 0; w < workers; ++w) {
            if (!(fds[w].revents & POLLIN)) continue;
            ssize_t r = ::read(ends[w], in.data(), in.size());
            if (r <= 0) continue;
            partial[w] += static_cast<std::size_t>(r);
            const long done = static_cast<long>(partial[w] / message);
            partial[w] %= message;
            received += done;
            const long more = std::min(done, messages - sent);
            if (more > 0) write_all(ends[w], out.data(), static_cast<std::size_t>(more) * message);
            sent += more;
        }
    }
    const double seconds = bench::seconds(bench::Clock::now() - start);
    // Close every end before waiting: later workers inherited earlier ones' ends.
    for (int fd : ends) ::close(fd);
    for (pid_t pid : pids) ::waitpid(pid, nullptr, 0);
    return static_cast<double>(messages * per_message) / seconds;
}

}  // namespace

ZMP_BENCH("pool.map.chunk1", "ops/s") { return farm_rate(2, opt.n(200000), 1, 64); }
ZMP_BENCH("pool.map.default", "ops/s") { return farm_rate(2, opt.n(200000), opt.n(200000) / 8, 1); }
// One task in flight to one worker: the round trip a synchronous apply cannot beat.
ZMP_BENCH("pool.apply.rtt", "us") { return 1e6 / farm_rate(1, opt.n(20000), 1, 1); }
