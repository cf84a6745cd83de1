#pragma once
// What the tests of tcp endpoints share: a private directory holding an authkey file, and raw
// bytes thrown at a loopback port.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "lab_files.hpp"
#include "zmp/authkey.hpp"

namespace test_util {

// A private directory holding an authkey file.
struct KeyDir {
    ScratchDir scratch{"zmp-test-keys"};
    std::string dir = scratch.dir, keyfile = scratch.path("authkey");
    zmp::Authkey key;

    explicit KeyDir(const zmp::Authkey& k = zmp::generate_authkey()) : key(k) { zmp::write_authkey_file(keyfile, key); }
};

// A raw tcp connection to 127.0.0.1:`port` that writes `bytes` and closes.
inline void send_raw(int port, const std::string& bytes) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<std::uint16_t>(port));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0)
        (void)!::write(fd, bytes.data(), bytes.size());
    ::close(fd);
}

// The port of "tcp://host:port".
inline int port_of(const std::string& endpoint) { return std::stoi(endpoint.substr(endpoint.rfind(':') + 1)); }

}  // namespace test_util
