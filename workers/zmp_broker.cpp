// zmp-broker: the broker of Lock, Event, Condition, Semaphore, Barrier and Queue objects as a
// process of its own.
//
//     zmp-broker ipc:///run/myapp/broker                      # for programs on this host
//     zmp-broker tcp://*:6000 --authkey-file /etc/zmp/key     # for programs on any host (CURVE)
//
// Programs on this host point their runtime at an ipc:// endpoint; programs anywhere join a
// tcp:// one with zmp::connect(endpoint, key) (zmp/remote.hpp). Several endpoints may be given
// (at most one ipc://). Every tcp endpoint uses CURVE keys derived from the authkey in
// --authkey-file; plain tcp only with --insecure, which prints a warning. A broker that serves
// tcp keeps every object's state in itself (no shared-memory fast path, which other hosts could
// not reach); on ipc:// alone it offers the fast path.
//
// Prints "zmp-broker: serving <endpoint>" for each endpoint once bound (a tcp one with the port it
// got), serves until SIGTERM or SIGINT, exits 0. Exit 2: bad command line (unknown option, no
// endpoint, tcp without a key, an unreadable authkey file); exit 1: cannot serve (bind failed).
#include <signal.h>

#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "broker/server.hpp"
#include "runtime/zmq_context.hpp"
#include "zmp/authkey.hpp"
#include "zmp/context.hpp"
#include "zmp/errors.hpp"
#include "zmp/transport/security.hpp"

namespace {

zmp::detail::broker::Server* serving = nullptr;

void on_signal(int) {
    if (serving != nullptr) serving->stop();  // async-signal-safe
}

bool starts_with(const std::string& s, const char* prefix) { return s.rfind(prefix, 0) == 0; }

int bad_usage(const std::string& why) {
    std::fprintf(stderr, "zmp-broker: %s\nRun with --help for more information.\n", why.c_str());
    return 2;
}

}  // namespace

int main(int argc, char** argv) {
    zmp::init(argc, argv);
    CLI::App app{"zmp-broker: serves zmp's Lock, RLock, Semaphore, Event, Condition, Barrier and Queue objects",
                 "zmp-broker"};
    std::vector<std::string> endpoints;
    std::string authkey_file;
    bool insecure = false;
    app.add_option("endpoint", endpoints,
                   "where to serve: ipc://PATH (this host; at most one) and/or tcp://HOST:PORT (any host; * for all "
                   "interfaces, port 0 for any)")
        ->required();
    app.add_option("--authkey-file", authkey_file,
                   "the authkey tcp clients must hold (64 hex digits, mode 0600): CURVE keys are derived from it");
    app.add_flag("--insecure", insecure, "serve tcp without authentication or encryption (trusted networks only)");
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        const int code = app.exit(e);
        return code == 0 ? 0 : 2;
    }

    std::string local;
    std::vector<std::string> tcp;
    for (const std::string& endpoint : endpoints) {
        if (starts_with(endpoint, "tcp://")) {
            tcp.push_back(endpoint);
        } else if (starts_with(endpoint, "ipc://") && local.empty()) {
            local = endpoint;
        } else {
            return bad_usage("cannot serve " + endpoint + ": give one ipc:// endpoint at most, and tcp:// ones");
        }
    }
    if (insecure && !authkey_file.empty()) return bad_usage("--insecure and --authkey-file exclude each other");
    if (!tcp.empty() && !insecure && authkey_file.empty())
        return bad_usage("tcp endpoints need --authkey-file FILE (or --insecure, on a trusted network only)");
    if (tcp.empty() && (insecure || !authkey_file.empty()))
        return bad_usage("--authkey-file and --insecure apply to tcp endpoints, and none was given");
    std::optional<zmp::transport::TcpSecurity> security;
    if (!tcp.empty()) {
        if (insecure) {
            std::fprintf(stderr,
                         "zmp-broker: warning: --insecure: anyone who reaches the tcp endpoints is admitted and "
                         "everything travels in clear text\n");
            security = zmp::transport::TcpSecurity::insecure();
        } else {
            try {
                security = zmp::transport::TcpSecurity::curve(zmp::read_authkey_file(authkey_file));
            } catch (const zmp::ProcessError& e) {
                return bad_usage(e.what());
            }
        }
    }

    try {
        zmp::detail::broker::Server::Options options;
        options.endpoint = local;
        options.shared_memory = tcp.empty();
        zmp::detail::broker::Server broker(zmp::detail::zmq_context(), options);
        std::vector<std::string> bound;
        if (!local.empty()) bound.push_back(local);
        for (const std::string& endpoint : tcp) bound.push_back(broker.serve_tcp(endpoint, *security));
        serving = &broker;
        struct sigaction action {};
        action.sa_handler = on_signal;
        ::sigemptyset(&action.sa_mask);
        ::sigaction(SIGTERM, &action, nullptr);
        ::sigaction(SIGINT, &action, nullptr);
        for (const std::string& endpoint : bound) std::printf("zmp-broker: serving %s\n", endpoint.c_str());
        std::fflush(stdout);
        broker.run();
        serving = nullptr;
    } catch (const zmp::ProcessError& e) {
        std::fprintf(stderr, "zmp-broker: %s\n", e.what());
        return 1;
    }
    return 0;
}
