// Listener and Client between "hosts" (network namespaces, netlab.hpp): the right key connects and
// talks, a wrong key is refused at the Client while the Listener serves on, garbage from a third
// host leaves it serving, and a client host that vanishes (no FIN) is EOF at the Listener within
// kPeerDeathBound. Skipped, and reported as skipped, where namespaces cannot be made.
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <random>
#include <thread>

#include "netlab.hpp"
#include "zmp/authkey.hpp"
#include "zmp/connection.hpp"
#include "zmp/errors.hpp"

using namespace std::chrono_literals;
using test_util::exit_code;
using test_util::NetLab;
using test_util::read_line;
using test_util::write_line;

namespace {

// A Listener on all of the calling host's interfaces: writes its port to `port_fd`, then accepts
// `clients` Connections, answers each one's "ping" with "pong" and its peer address, and waits
// for its EOF (so that what it sent has arrived before this process exits).
int serve(const zmp::Authkey& key, int port_fd, int clients) {
    zmp::Listener listener("tcp://0.0.0.0:0", key);
    const std::string bound = listener.address();
    write_line(port_fd, bound.substr(bound.rfind(':') + 1));
    for (int i = 0; i < clients; ++i) {
        zmp::Connection conn = listener.accept();
        if (conn.recv<std::string>() != "ping") return 10;
        conn.send(std::string("pong"));
        conn.send(*listener.last_accepted());
        try {
            (void)conn.recv_bytes();
            return 11;
        } catch (const zmp::EOFError&) {
        }
    }
    return 0;
}

// Raw bytes to `host`:`port`, then close.
void send_raw(const std::string& host, int port, const std::string& bytes) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return;
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<std::uint16_t>(port));
    ::inet_pton(AF_INET, host.c_str(), &address.sin_addr);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0)
        (void)!::write(fd, bytes.data(), bytes.size());
    ::close(fd);
}

}  // namespace

TEST_CASE("across hosts: a wrong key is refused at the Client, garbage is survived, the right key talks") {
    NetLab lab({"head", "a", "b"});
    if (!lab) test_util::skip_test(lab.why());
    const zmp::Authkey key = zmp::generate_authkey();
    int port_pipe[2];
    REQUIRE(::pipe(port_pipe) == 0);
    const pid_t server = lab.fork_into("head", [&] { return serve(key, port_pipe[1], 2); });
    const std::string port = read_line(port_pipe[0]);
    const std::string endpoint = "tcp://" + lab.address("head") + ":" + port;

    const pid_t garbage = lab.fork_into("b", [&] {
        std::mt19937 random(3);
        for (int i = 0; i < 100; ++i) {
            std::string bytes(static_cast<std::size_t>(random() % 2048), '\0');
            for (char& c : bytes) c = static_cast<char>(random());
            if (i % 4 == 0) bytes.insert(0, std::string("\xff\0\0\0\0\0\0\0\x01\x7f", 10));
            send_raw(lab.address("head"), std::stoi(port), bytes);
        }
        return 0;
    });
    CHECK(exit_code(garbage) == 0);

    const std::string a_address = lab.address("a");
    const pid_t client = lab.fork_into("a", [&] {
        try {
            (void)zmp::Client(endpoint, zmp::generate_authkey(), 60s);
            return 1;
        } catch (const zmp::AuthenticationError&) {
        }
        for (int i = 0; i < 2; ++i) {
            zmp::Connection c = zmp::Client(endpoint, key, 60s);
            c.send(std::string("ping"));
            if (c.recv<std::string>() != "pong") return 2;
            if (c.recv<std::string>() != a_address) return 3;  // last_accepted names host a
            c.close();
        }
        return 0;
    });
    CHECK(exit_code(client) == 0);
    CHECK(exit_code(server) == 0);
}

TEST_CASE("across hosts: a Client host that vanishes (no FIN) is EOF at the Listener within kPeerDeathBound") {
    NetLab lab({"head", "a"});
    if (!lab) test_util::skip_test(lab.why());
    const zmp::Authkey key = zmp::generate_authkey();
    int port_pipe[2], eof_pipe[2], up_pipe[2];
    REQUIRE(::pipe(port_pipe) == 0);
    REQUIRE(::pipe(eof_pipe) == 0);
    REQUIRE(::pipe(up_pipe) == 0);
    const pid_t server = lab.fork_into("head", [&] {
        zmp::Listener listener("tcp://0.0.0.0:0", key);
        const std::string bound = listener.address();
        write_line(port_pipe[1], bound.substr(bound.rfind(':') + 1));
        zmp::Connection conn = listener.accept();
        if (conn.recv<std::string>() != "hello") return 1;
        // The host is cut now: only heartbeats can tell. Generous: the bound plus a margin.
        if (!conn.poll(zmp::Seconds(60))) return 2;
        try {
            (void)conn.recv_bytes();
            return 3;
        } catch (const zmp::EOFError&) {
        }
        write_line(eof_pipe[1], "eof");
        return 0;
    });
    const std::string endpoint = "tcp://" + lab.address("head") + ":" + read_line(port_pipe[0]);
    const pid_t client = lab.fork_into("a", [&] {
        zmp::Connection c = zmp::Client(endpoint, key, 60s);
        c.send(std::string("hello"));
        write_line(up_pipe[1], "up");
        for (;;) ::pause();
        return 0;
    });
    REQUIRE(read_line(up_pipe[0]) == "up");
    std::this_thread::sleep_for(500ms);  // "hello" is on its way before the cut
    REQUIRE(lab.cut("a"));
    CHECK(read_line(eof_pipe[0]) == "eof");
    CHECK(exit_code(server) == 0);
    ::kill(client, SIGKILL);
    exit_code(client);
}
