// zmp-broker: the broker of Lock, Event, Condition, Semaphore, Barrier and Queue objects as a
// process of its own, for programs whose runtime is pointed at it instead of starting the
// embedded one.
//
//     zmp-broker ipc:///run/myapp/broker
//
// Prints "zmp-broker: serving <endpoint>" once bound, serves until SIGTERM or SIGINT, exits 0.
// On an ipc:// endpoint it offers the same-host fast path (shared memory). Other transports carry
// the broker protocol only; tcp:// has no authentication yet (CURVE comes with the multi-host
// issue), so bind it only on a trusted network.
#include <signal.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "broker/server.hpp"
#include "runtime/zmq_context.hpp"
#include "zmp/context.hpp"
#include "zmp/errors.hpp"

namespace {

zmp::detail::broker::Server* serving = nullptr;

void on_signal(int) {
    if (serving != nullptr) serving->stop();  // async-signal-safe
}

int usage(const char* self) {
    std::fprintf(stderr, "usage: %s <endpoint>     e.g. %s ipc:///tmp/myapp/broker\n", self, self);
    return 2;
}

}  // namespace

int main(int argc, char** argv) {
    zmp::init(argc, argv);
    if (argc != 2 || argv[1][0] == '-') return usage(argv[0]);
    const std::string endpoint = argv[1];
    const bool same_host = endpoint.rfind("ipc://", 0) == 0;
    if (endpoint.rfind("tcp://", 0) == 0) {
        std::fprintf(stderr, "zmp-broker: warning: %s is not authenticated yet; use it on a trusted network only\n",
                     endpoint.c_str());
    }
    try {
        zmp::detail::broker::Server broker(zmp::detail::zmq_context(), {endpoint, "", same_host});
        serving = &broker;
        struct sigaction action {};
        action.sa_handler = on_signal;
        ::sigemptyset(&action.sa_mask);
        ::sigaction(SIGTERM, &action, nullptr);
        ::sigaction(SIGINT, &action, nullptr);
        std::printf("zmp-broker: serving %s\n", endpoint.c_str());
        std::fflush(stdout);
        broker.run();
        serving = nullptr;
    } catch (const zmp::ProcessError& e) {
        std::fprintf(stderr, "zmp-broker: %s\n", e.what());
        return 1;
    }
    return 0;
}
