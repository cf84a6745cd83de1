// The raw floor of the pool's tcp rows: libzmq alone, a ROUTER here and forked DEALER workers over
// tcp on loopback with CURVE (the security every zmp tcp endpoint uses), 8-byte tasks f(i) = 2i
// with no framing of zmp's, no serialisation and no bookkeeping.
#include <sys/wait.h>
#include <unistd.h>

#include <zmq.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "bench.hpp"

namespace {

struct Keys {
    char server_public[41] = {};
    char server_secret[41] = {};
    char client_public[41] = {};
    char client_secret[41] = {};
    Keys() {
        zmq_curve_keypair(server_public, server_secret);
        zmq_curve_keypair(client_public, client_secret);
    }
};

// Echoes 2x of every 8-byte task until an empty message.
[[noreturn]] void serve(const std::string& endpoint, const Keys& keys) {
    zmq::context_t ctx(1);
    zmq::socket_t s(ctx, zmq::socket_type::dealer);
    s.set(zmq::sockopt::curve_serverkey, std::string(keys.server_public));
    s.set(zmq::sockopt::curve_publickey, std::string(keys.client_public));
    s.set(zmq::sockopt::curve_secretkey, std::string(keys.client_secret));
    s.connect(endpoint);
    const std::int64_t hello = 0;
    s.send(zmq::const_buffer(&hello, sizeof hello), zmq::send_flags::none);
    for (;;) {
        zmq::message_t m;
        if (!s.recv(m) || m.size() != sizeof(std::int64_t)) break;
        std::int64_t x;
        std::memcpy(&x, m.data(), sizeof x);
        x *= 2;
        s.send(zmq::const_buffer(&x, sizeof x), zmq::send_flags::none);
    }
    s.set(zmq::sockopt::linger, 0);
    _exit(0);
}

// `workers` forked DEALERs joined to a ROUTER here; `window` tasks in flight on each.
struct Farm {
    Keys keys;
    zmq::context_t ctx{1};
    zmq::socket_t router{ctx, zmq::socket_type::router};
    std::vector<pid_t> pids;
    std::vector<std::string> peers;

    explicit Farm(int workers) {
        router.set(zmq::sockopt::curve_server, 1);
        router.set(zmq::sockopt::curve_secretkey, std::string(keys.server_secret));
        router.set(zmq::sockopt::linger, 0);
        router.bind("tcp://127.0.0.1:0");
        const std::string endpoint = router.get(zmq::sockopt::last_endpoint);
        for (int i = 0; i < workers; ++i) {
            const pid_t pid = ::fork();
            if (pid == 0) serve(endpoint, keys);
            pids.push_back(pid);
        }
        for (int i = 0; i < workers; ++i) {
            zmq::message_t id, hello;
            (void)router.recv(id);
            (void)router.recv(hello);
            peers.push_back(id.to_string());
        }
    }
    void send(std::size_t peer, std::int64_t x) {
        router.send(zmq::buffer(peers[peer]), zmq::send_flags::sndmore);
        router.send(zmq::const_buffer(&x, sizeof x), zmq::send_flags::none);
    }
    // The index of the peer that answered.
    std::size_t recv() {
        zmq::message_t id, body;
        (void)router.recv(id);
        (void)router.recv(body);
        const std::string who = id.to_string();
        for (std::size_t i = 0; i < peers.size(); ++i)
            if (peers[i] == who) return i;
        return 0;
    }
    ~Farm() {
        for (std::size_t i = 0; i < peers.size(); ++i) {
            router.send(zmq::buffer(peers[i]), zmq::send_flags::sndmore);
            router.send(zmq::const_buffer("", 0), zmq::send_flags::none);
        }
        for (pid_t pid : pids) ::waitpid(pid, nullptr, 0);
    }
};

double farm_rate(int workers, long tasks, int window) {
    Farm farm(workers);
    long sent = 0, done = 0;
    const auto start = bench::Clock::now();
    for (std::size_t w = 0; w < farm.peers.size(); ++w)
        for (int i = 0; i < window && sent < tasks; ++i) farm.send(w, sent++);
    while (done < tasks) {
        const std::size_t w = farm.recv();
        ++done;
        if (sent < tasks) farm.send(w, sent++);
    }
    return static_cast<double>(tasks) / bench::seconds(bench::Clock::now() - start);
}

}  // namespace

ZMP_BENCH("pool.map.chunk1.tcp", "ops/s") { return farm_rate(2, opt.n(200000), 64); }

ZMP_BENCH("pool.apply.rtt.tcp", "us") {
    Farm farm(1);
    for (int i = 0; i < 100; ++i) {
        farm.send(0, i);
        (void)farm.recv();
    }
    return 1e6 * bench::seconds_per_op(5, opt.n(2000), [&] {
               farm.send(0, 1);
               (void)farm.recv();
           });
}
