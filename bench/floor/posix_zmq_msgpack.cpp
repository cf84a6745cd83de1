// The raw floors: what the hardware, the kernel, libzmq and msgpack-cxx cost with nothing on top.
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <msgpack.hpp>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "bench.hpp"

namespace {

void write_all(int fd, const char* p, std::size_t n) {
    while (n > 0) {
        ssize_t w = ::write(fd, p, n);
        if (w <= 0) _exit(1);
        p += w;
        n -= static_cast<std::size_t>(w);
    }
}

bool read_all(int fd, char* p, std::size_t n) {
    while (n > 0) {
        ssize_t r = ::read(fd, p, n);
        if (r <= 0) return false;
        p += r;
        n -= static_cast<std::size_t>(r);
    }
    return true;
}

// Round trip of `size` bytes over a socketpair to an echoing child (length known to both).
double socketpair_rtt_us(const bench::Options& opt, std::size_t size, int per_round) {
    int fds[2];
    ::socketpair(AF_UNIX, SOCK_STREAM, 0, fds);
    pid_t pid = ::fork();
    if (pid == 0) {
        ::close(fds[0]);
        std::vector<char> buf(size);
        while (read_all(fds[1], buf.data(), size)) write_all(fds[1], buf.data(), size);
        _exit(0);
    }
    ::close(fds[1]);
    std::vector<char> buf(size, 'x');
    const double s = bench::seconds_per_op(5, opt.n(per_round), [&] {
        write_all(fds[0], buf.data(), size);
        read_all(fds[0], buf.data(), size);
    });
    ::close(fds[0]);
    ::waitpid(pid, nullptr, 0);
    return s * 1e6;
}

// The mean round trip of 1 byte over `pairs` socketpairs at once, each between a forked pinger
// and a forked echo: more processes than cores, with nothing on top of the kernel.
double socketpairs_rtt_us(const bench::Options& opt, int pairs, int per_round) {
    auto* results =
        static_cast<double*>(::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
    int start[2];
    ::pipe(start);
    std::vector<pid_t> children;
    for (int i = 0; i < pairs; ++i) {
        int fds[2];
        ::socketpair(AF_UNIX, SOCK_STREAM, 0, fds);
        pid_t echo = ::fork();
        if (echo == 0) {
            ::close(fds[0]);
            ::close(start[0]);
            ::close(start[1]);
            char c;
            while (read_all(fds[1], &c, 1)) write_all(fds[1], &c, 1);
            _exit(0);
        }
        pid_t pinger = ::fork();
        if (pinger == 0) {
            ::close(fds[1]);
            ::close(start[1]);
            char c = 'x';
            (void)::read(start[0], &c, 1);  // end of file: everyone starts together
            results[i] = 1e6 * bench::seconds_per_op(5, opt.n(per_round), [&] {
                             write_all(fds[0], &c, 1);
                             read_all(fds[0], &c, 1);
                         });
            _exit(0);
        }
        ::close(fds[0]);
        ::close(fds[1]);
        children.push_back(echo);
        children.push_back(pinger);
    }
    ::close(start[0]);
    ::close(start[1]);
    for (pid_t pid : children) ::waitpid(pid, nullptr, 0);
    double sum = 0;
    for (int i = 0; i < pairs; ++i) sum += results[i];
    ::munmap(results, 4096);
    return sum / pairs;
}

// Round trip of `size` bytes over ZeroMQ ipc PAIR sockets to an echoing child.
double zmq_rtt_us(const bench::Options& opt, std::size_t size, int per_round) {
    const std::string endpoint = "ipc:///tmp/zmp-floor-" + std::to_string(::getpid());
    pid_t pid = ::fork();
    if (pid == 0) {
        zmq::context_t ctx;
        zmq::socket_t s(ctx, zmq::socket_type::pair);
        s.connect(endpoint);
        for (;;) {
            zmq::message_t m;
            if (!s.recv(m)) break;
            if (m.size() == 0) break;
            s.send(m, zmq::send_flags::none);
        }
        _exit(0);
    }
    zmq::context_t ctx;
    zmq::socket_t s(ctx, zmq::socket_type::pair);
    s.set(zmq::sockopt::linger, 0);
    s.bind(endpoint);
    std::string payload(size, 'x');
    auto rtt = [&] {
        s.send(zmq::buffer(payload), zmq::send_flags::none);
        zmq::message_t m;
        (void)s.recv(m);
    };
    for (int i = 0; i < 10; ++i) rtt();
    const double sec = bench::seconds_per_op(5, opt.n(per_round), rtt);
    s.send(zmq::const_buffer("", 0), zmq::send_flags::none);
    ::waitpid(pid, nullptr, 0);
    ::unlink(endpoint.c_str() + 6);
    return sec * 1e6;
}

}  // namespace

ZMP_BENCH("process.start_join.fork", "ms") {
    return 1e3 * bench::seconds_per_op(5, opt.n(40), [] {
               pid_t pid = ::fork();
               if (pid == 0) _exit(0);
               ::waitpid(pid, nullptr, 0);
           });
}
// The socket pair is the floor of Pipes carried by their socket alone (ZMP_PIPE=socket); the
// shared-memory ping-pong (shm_pingpong.cpp) is the floor of the default ones.
ZMP_BENCH("pipe.rtt.1B.socket", "us") { return socketpair_rtt_us(opt, 1, 5000); }
ZMP_BENCH("pipe.rtt.1KiB.socket", "us") { return socketpair_rtt_us(opt, 1024, 5000); }
ZMP_BENCH("pipe.rtt.1MiB.socket", "us") { return socketpair_rtt_us(opt, 1 << 20, 200); }
ZMP_BENCH("pipe.rtt.1B.oversub", "us") { return socketpairs_rtt_us(opt, 4, 2000); }
ZMP_BENCH("pipe.rtt.1B.oversub.socket", "us") { return socketpairs_rtt_us(opt, 4, 2000); }
ZMP_BENCH("zmq.rtt.1B", "us") { return zmq_rtt_us(opt, 1, 2000); }

ZMP_BENCH("codec.int", "ns") {
    volatile long sink = 0;
    long i = 0;
    msgpack::sbuffer buffer;
    return 1e9 * bench::seconds_per_op(5, opt.n(1000000), [&] {
               buffer.clear();
               msgpack::pack(buffer, ++i);
               msgpack::object_handle h = msgpack::unpack(buffer.data(), buffer.size());
               sink = sink + h.get().as<long>();
           });
}

// posix_spawn of a small program that links libzmq (this binary), run with a flag that makes it
// exit at once: the floor under any exec-based start.
#include <spawn.h>
extern char** environ;
ZMP_BENCH("process.start_join.spawn", "ms") {
    char self[] = "/proc/self/exe";
    char flag[] = "--exit-at-once";
    char* argv[] = {self, flag, nullptr};
    return 1e3 * bench::seconds_per_op(5, opt.n(10), [&] {
               pid_t pid;
               ::posix_spawn(&pid, self, nullptr, nullptr, argv, environ);
               ::waitpid(pid, nullptr, 0);
           });
}
