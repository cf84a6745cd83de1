// A process that knows only a broker endpoint and a handle, as a spawned child will: it was not
// forked from the process that made the objects and inherited nothing.
//   sync_handle_probe <broker endpoint> <hex of the msgpack of tuple<Lock, Event>>
// Expects the lock to be held by someone else, sets the event, then takes the lock once it is
// released. Prints "probe ok" (exit 0) or what went wrong (exit 1).
#include <cstdio>
#include <string>
#include <tuple>

#include "runtime/run.hpp"
#include "zmp/context.hpp"
#include "zmp/sync.hpp"
#include "zmp/transport/codec.hpp"

int main(int argc, char** argv) {
    zmp::init(argc, argv);
    if (argc != 3) return 2;
    zmp::detail::this_run().set_broker_endpoint(argv[1]);
    const std::string hex = argv[2];
    std::string bytes;
    for (std::size_t i = 0; i + 1 < hex.size(); i += 2)
        bytes.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
    try {
        auto [lock, event] = zmp::transport::decode_as<std::tuple<zmp::Lock, zmp::Event>>(bytes.data(), bytes.size());
        if (lock.acquire(false)) {
            std::puts("the lock was free");
            return 1;
        }
        event.set();
        if (!lock.acquire(std::chrono::seconds(60))) {
            std::puts("the lock never came");
            return 1;
        }
        lock.release();
    } catch (const std::exception& e) {
        std::printf("error: %s\n", e.what());
        return 1;
    }
    std::puts("probe ok");
    return 0;
}
