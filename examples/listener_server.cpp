// The guide's Listener example (multiprocessing.connection): serves one Client, sends it a list,
// some bytes and an array of ints. Run it with listener_client beside it:
//     (umask 077; openssl rand -hex 32 > authkey)
//     ./listener_server tcp://127.0.0.1:6000 authkey &  ./listener_client tcp://127.0.0.1:6000 authkey
#include <zmp/zmp.hpp>

#include <array>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <tuple>

using Message = std::tuple<double, std::optional<int>, std::string>;

int main(int argc, char** argv) {
    zmp::init(argc, argv);
    const std::string address = argc > 1 ? argv[1] : "tcp://127.0.0.1:6000";
    const zmp::Authkey key = zmp::read_authkey_file(argc > 2 ? argv[2] : "authkey");
    zmp::Listener listener(address, key);
    zmp::Connection conn = listener.accept();
    std::printf("connection accepted from '%s'\n", listener.last_accepted()->c_str());
    conn.send(Message{2.25, std::nullopt, "junk"});
    conn.send_bytes("hello");
    const std::array<std::int32_t, 2> numbers{42, 1729};
    conn.send_bytes(numbers.data(), sizeof numbers);
    conn.close();
    listener.close();
}
