// The guide's Client example (multiprocessing.connection): receives what listener_server sends.
//     ./listener_client tcp://127.0.0.1:6000 authkey
#include <zmp/zmp.hpp>

#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <span>
#include <string>
#include <tuple>

using Message = std::tuple<double, std::optional<int>, std::string>;

int main(int argc, char** argv) {
    zmp::init(argc, argv);
    const std::string address = argc > 1 ? argv[1] : "tcp://127.0.0.1:6000";
    const zmp::Authkey key = zmp::read_authkey_file(argc > 2 ? argv[2] : "authkey");
    // Waits up to a minute for the listener to be there.
    zmp::Connection conn = zmp::Client(address, key, std::chrono::seconds(60));
    auto [number, nothing, text] = conn.recv<Message>();
    std::printf("[%g, %s, '%s']\n", number, nothing ? "?" : "None", text.c_str());
    std::printf("%s\n", conn.recv_bytes().c_str());
    std::array<std::int32_t, 5> numbers{};
    std::printf("%zu\n", conn.recv_bytes_into(std::as_writable_bytes(std::span(numbers))));
    std::printf("[%d, %d, %d, %d, %d]\n", numbers[0], numbers[1], numbers[2], numbers[3], numbers[4]);
}
