// tcp security between "hosts" (network namespaces, netlab.hpp): a refused peer is reported with
// its own host's address, and ZMTP heartbeats notice a host that vanished without a FIN.
// Skipped, and reported as skipped, where namespaces cannot be made.
#include <catch2/catch.hpp>

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <functional>

#include "netlab.hpp"
#include "zmp/errors.hpp"
#include "zmp/transport/security.hpp"
#include "zmp/transport/zsocket.hpp"

using namespace std::chrono_literals;
using namespace zmp::transport;
using test_util::NetLab;

using test_util::exit_code;
using test_util::read_line;
using test_util::write_line;

namespace {

// Reads one line from `fd`, waiting at most `limit`; empty if none came.
std::string read_line_within(int fd, std::chrono::milliseconds limit) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(limit.count())) <= 0) return {};
    return read_line(fd);
}

// A CURVE ROUTER for `key` on all the calling host's interfaces: writes its port to `port_fd`,
// every refusal it reports (describe()) to `refusal_fd`, and answers "ping" with "pong" until it
// is killed.
[[noreturn]] void serve(const Authkey& key, int port_fd, int refusal_fd) {
    zmq::context_t context(1);
    auto zap = Authenticator::of(context);
    zap->set_refusal_handler([&](const Refusal& r) { write_line(refusal_fd, describe(r)); });
    auto server = open_socket(context, zmq::socket_type::router);
    apply_server_security(server, TcpSecurity::curve(key), *zap);
    server.bind("tcp://0.0.0.0:0");
    const std::string bound = server.get(zmq::sockopt::last_endpoint);
    write_line(port_fd, bound.substr(bound.rfind(':') + 1));
    std::vector<zmq::message_t> frames;
    for (;;) {
        if (recv_message(server, frames, 4) && frames.size() == 2)
            send_message(server, {zmq::buffer(frames[0].to_string_view()), zmq::str_buffer("pong")});
    }
}

}  // namespace

TEST_CASE("a peer on another host with a wrong key is refused, and the server reports that host's address") {
    NetLab lab({"head", "a"});
    if (!lab) test_util::skip_test(lab.why());
    const Authkey key = generate_authkey();
    const std::string a_address = lab.address("a");

    int port_pipe[2], refusal_pipe[2];
    REQUIRE(::pipe(port_pipe) == 0);
    REQUIRE(::pipe(refusal_pipe) == 0);
    const pid_t server = lab.fork_into("head", [&]() -> int { serve(key, port_pipe[1], refusal_pipe[1]); });
    const std::string endpoint = "tcp://" + lab.address("head") + ":" + read_line(port_pipe[0]);

    const pid_t client = lab.fork_into("a", [&] {
        zmq::context_t context(1);
        // Another authkey altogether: refused before ZAP, the client learns it all the same.
        auto wrong = open_socket(context, zmq::socket_type::dealer);
        apply_client_security(wrong, TcpSecurity::curve(generate_authkey()));
        try {
            connect_and_authenticate(context, wrong, endpoint, 5s);
            return 1;
        } catch (const zmp::AuthenticationError&) {
        }
        // The server's public key but another authkey's client key: ZAP refuses it.
        const CurveKeys right = derive_curve_keys(key), other = derive_curve_keys(generate_authkey());
        auto crafted = open_socket(context, zmq::socket_type::dealer);
        crafted.set(zmq::sockopt::curve_serverkey, right.server_public);
        crafted.set(zmq::sockopt::curve_publickey, other.client_public);
        crafted.set(zmq::sockopt::curve_secretkey, other.client_secret);
        try {
            connect_and_authenticate(context, crafted, endpoint, 5s);
            return 2;
        } catch (const zmp::AuthenticationError&) {
        }
        // And the right key is admitted.
        auto good = open_socket(context, zmq::socket_type::dealer);
        apply_client_security(good, TcpSecurity::curve(key));
        if (connect_and_authenticate(context, good, endpoint, 5s) != Handshake::succeeded) return 3;
        send_message(good, {zmq::str_buffer("ping")});
        std::vector<zmq::message_t> reply;
        if (!recv_message(good, reply, 2, 5s) || reply.size() != 1 || reply[0].to_string() != "pong") return 4;
        return 0;
    });
    CHECK(exit_code(client) == 0);
    // ZAP's refusals always carry the address: the crafted key's refusal names host a.
    const std::string wanted = "zmp: refused tcp peer " + a_address + " (CURVE): unknown CURVE key";
    bool seen = false;
    for (std::string line; !seen && !(line = read_line_within(refusal_pipe[0], 10s)).empty();) seen = line == wanted;
    CHECK(seen);
    ::kill(server, SIGKILL);
    exit_code(server);
}

TEST_CASE("ZMTP heartbeats close the connection to a host that vanished (no FIN, no RST)") {
    NetLab lab({"head", "a"});
    if (!lab) test_util::skip_test(lab.why());
    const Authkey key = generate_authkey();

    int port_pipe[2], refusal_pipe[2], connected_pipe[2];
    REQUIRE(::pipe(port_pipe) == 0);
    REQUIRE(::pipe(refusal_pipe) == 0);
    REQUIRE(::pipe(connected_pipe) == 0);
    const pid_t server = lab.fork_into("head", [&]() -> int { serve(key, port_pipe[1], refusal_pipe[1]); });
    const std::string endpoint = "tcp://" + lab.address("head") + ":" + read_line(port_pipe[0]);

    const pid_t client = lab.fork_into("a", [&] {
        zmq::context_t context(1);
        auto socket = open_socket(context, zmq::socket_type::dealer,
                                  SocketOptions{.heartbeat_ivl_ms = 200, .heartbeat_timeout_ms = 1000});
        apply_client_security(socket, TcpSecurity::curve(key));
        if (connect_and_authenticate(context, socket, endpoint, 10s) != Handshake::succeeded) return 1;
        if (zmq_socket_monitor(socket.handle(), "inproc://cut", ZMQ_EVENT_DISCONNECTED) != 0) return 2;
        zmq::socket_t monitor(context, zmq::socket_type::pair);
        monitor.set(zmq::sockopt::linger, 0);
        monitor.connect("inproc://cut");
        write_line(connected_pipe[1], "up");
        std::vector<zmq::message_t> event;
        // Only a heartbeat can notice: the link is silent, not closed.
        if (!recv_message(monitor, event, 2, 30s)) return 3;
        zmq_socket_monitor(socket.handle(), nullptr, 0);
        return 0;
    });
    REQUIRE(read_line(connected_pipe[0]) == "up");
    REQUIRE(lab.cut("a"));
    CHECK(exit_code(client) == 0);
    ::kill(server, SIGKILL);
    exit_code(server);
}
