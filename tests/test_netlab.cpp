// The multihost tests' lab itself: hosts in network namespaces reach each other and nothing else,
// and cutting a host makes its packets vanish (no FIN, no RST). Skipped, and reported as skipped,
// where namespaces cannot be made.
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <functional>

#include "netlab.hpp"

using test_util::NetLab;

namespace {

// Runs f() in a forked child moved into `host`; returns its exit code.
int in_host(const NetLab& lab, const std::string& host, const std::function<int()>& f) {
    const pid_t pid = ::fork();
    if (pid == 0) {
        lab.enter(host);
        ::_exit(f());
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 100 + WTERMSIG(status);
}

sockaddr_in address_of(const std::string& ip, int port) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    ::inet_pton(AF_INET, ip.c_str(), &a.sin_addr);
    return a;
}

// A non-blocking connect: 0 connected, 1 refused/unreachable at once, 2 still pending after `ms`.
int try_connect(const std::string& ip, int port, int ms) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    sockaddr_in a = address_of(ip, port);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) return 0;
    if (errno != EINPROGRESS) return 1;
    pollfd p{fd, POLLOUT, 0};
    if (::poll(&p, 1, ms) == 0) return 2;
    int error = 0;
    socklen_t len = sizeof error;
    ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len);
    return error == 0 ? 0 : 1;
}

}  // namespace

TEST_CASE("lab hosts reach each other, the machine's network is out of reach, and a cut host goes silent") {
    NetLab lab({"a", "b"});
    if (!lab) test_util::skip_test(lab.why());

    // A listener in host a.
    int ready[2];
    REQUIRE(::pipe(ready) == 0);
    const std::string a = lab.address("a");
    const pid_t server = ::fork();
    if (server == 0) {
        lab.enter("a");
        const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
        const int one = 1;
        ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        sockaddr_in any = address_of("0.0.0.0", 7000);
        if (::bind(fd, reinterpret_cast<sockaddr*>(&any), sizeof any) != 0 || ::listen(fd, 16) != 0) ::_exit(1);
        (void)!::write(ready[1], "r", 1);
        for (;;) {
            const int c = ::accept(fd, nullptr, nullptr);
            char byte;
            if (c >= 0 && ::read(c, &byte, 1) == 1) (void)!::write(c, &byte, 1);
            if (c >= 0) ::close(c);
        }
    }
    char byte;
    REQUIRE(::read(ready[0], &byte, 1) == 1);

    // b reaches a and gets its byte echoed.
    CHECK(in_host(lab, "b", [&] {
              const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
              sockaddr_in to = address_of(a, 7000);
              if (::connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof to) != 0) return 1;
              char out = 'x', in = 0;
              if (::write(fd, &out, 1) != 1 || ::read(fd, &in, 1) != 1) return 2;
              return in == 'x' ? 0 : 3;
          }) == 0);
    // Nothing outside the lab is reachable: there is no route.
    CHECK(in_host(lab, "b", [] { return try_connect("192.0.2.1", 80, 2000); }) == 1);
    // A closed port in a live host refuses at once (a RST)...
    CHECK(in_host(lab, "b", [&] { return try_connect(a, 7001, 10000); }) == 1);
    // ...but once a is cut, nothing comes back at all: the connection attempt just hangs.
    REQUIRE(lab.cut("a"));
    CHECK(in_host(lab, "b", [&] { return try_connect(a, 7001, 1000); }) == 2);
    REQUIRE(lab.heal("a"));
    CHECK(in_host(lab, "b", [&] { return try_connect(a, 7000, 10000); }) == 0);

    ::kill(server, SIGKILL);
    ::waitpid(server, nullptr, 0);
}
