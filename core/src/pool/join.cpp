// A worker that joins a pool over tcp (zmp/worker.hpp): a DEALER with CURVE keys from the authkey
// and ZMTP heartbeats, the join handshake of dispatcher.hpp, then the same task requests as a
// local worker serves (task_server.hpp). worker_main() is the command line around it, and
// `--zmp-worker ENDPOINT` as a program's first argument has zmp::init() run it instead of main.
#include "zmp/worker.hpp"

#include <dlfcn.h>
#include <poll.h>
#include <unistd.h>

#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <optional>
#include <thread>
#include <vector>

#include "pool/dispatcher.hpp"
#include "pool/frames.hpp"
#include "pool/task_server.hpp"
#include "runtime/hooks.hpp"
#include "zmp/context.hpp"
#include "zmp/errors.hpp"
#include "zmp/exceptions.hpp"
#include "zmp/process.hpp"
#include "zmp/transport/codec.hpp"
#include "zmp/transport/security.hpp"
#include "zmp/transport/zsocket.hpp"

namespace zmp {
namespace detail {
namespace {

using Clock = std::chrono::steady_clock;

std::string host_name() {
    char buffer[256] = {};
    if (::gethostname(buffer, sizeof buffer - 1) != 0) return "localhost";
    return buffer;
}

std::string packed(int kind) {
    msgpack::sbuffer buffer;
    msgpack::packer<msgpack::sbuffer> out(buffer);
    out.pack_array(1);
    out.pack(kind);
    return std::string(buffer.data(), buffer.size());
}

// One connection to a pool: what the worker sends goes through here.
class PoolLink {
public:
    PoolLink(const JoinSettings& settings) : settings_(settings) {
        const int timeout_ms = static_cast<int>(settings.heartbeat_timeout.count());
        socket_ = transport::open_socket(
            context_, zmq::socket_type::dealer,
            transport::SocketOptions{.max_message = static_cast<std::int64_t>(kMaxPoolMessage),
                                     .reconnect_ivl_ms = 100,
                                     .heartbeat_ivl_ms = static_cast<int>(settings.heartbeat.count()),
                                     .heartbeat_timeout_ms = timeout_ms,
                                     .heartbeat_ttl_ms = timeout_ms});
        socket_.set(zmq::sockopt::reconnect_ivl_max, 5000);
        // A result that cannot leave for the whole grace period means the pool is gone.
        socket_.set(zmq::sockopt::sndtimeo, static_cast<int>(settings.grace.count()));
        transport::apply_client_security(socket_, transport::TcpSecurity::curve(settings.authkey));
    }

    /// Connects; false if the pool could not be reached within the grace period.
    bool connect() {
        const auto deadline = Clock::now() + settings_.grace;
        auto pause = std::chrono::milliseconds(100);
        for (;;) {
            if (transport::connect_and_authenticate(context_, socket_, settings_.endpoint, std::chrono::seconds(1)) ==
                transport::Handshake::succeeded) {
                return true;
            }
            if (Clock::now() + pause >= deadline) return false;
            std::this_thread::sleep_for(pause);
            pause = std::min(pause * 2, std::chrono::milliseconds(5000));
        }
    }

    void send(const char* data, std::size_t size) {
        zmq::message_t message(data, size);
        send(message);
    }
    void send(std::span<const iovec> parts) {
        // Gathered straight into the frame ZeroMQ sends (it takes the message as it is).
        std::size_t size = 0;
        for (const iovec& part : parts) size += part.iov_len;
        zmq::message_t message(size);
        auto* at = static_cast<char*>(message.data());
        for (const iovec& part : parts) {
            if (part.iov_len > 0) std::memcpy(at, part.iov_base, part.iov_len);
            at += part.iov_len;
        }
        send(message);
    }
    void send(zmq::message_t& message) {
        if (!socket_.send(message, zmq::send_flags::none)) {
            throw TimeoutError("lost the pool at " + settings_.endpoint + ": a message could not leave for " +
                               std::to_string(settings_.grace.count() / 1000) + " s");
        }
    }
    /// Sends without waiting (nothing is lost when no connection is up: it is a ping).
    void try_send(const std::string& message) { (void)socket_.send(zmq::buffer(message), zmq::send_flags::dontwait); }

    bool recv(zmq::message_t& message, std::chrono::milliseconds timeout) {
        std::vector<zmq::message_t> frames;
        if (!transport::recv_message(socket_, frames, 2, timeout)) return false;
        if (frames.size() != 1) return recv(message, std::chrono::milliseconds(0));  // not the protocol: ignored
        message = std::move(frames[0]);
        return true;
    }

private:
    const JoinSettings& settings_;
    zmq::context_t context_{1};
    zmq::socket_t socket_;
};

}  // namespace

int serve_joined_pool(const JoinSettings& settings) {
    PoolLink link(settings);
    if (!link.connect()) {
        std::fprintf(stderr, "zmp worker: cannot reach the pool at %s (gave up after %lld s)\n",
                     settings.endpoint.c_str(), static_cast<long long>(settings.grace.count() / 1000));
        return 1;
    }
    const std::string host = host_name();
    const std::string name = settings.name.empty() ? host + "-" + std::to_string(::getpid()) : settings.name;
    msgpack::sbuffer hello;
    {
        msgpack::packer<msgpack::sbuffer> out(hello);
        out.pack_array(2);
        out.pack(static_cast<int>(kJoinHello));
        out.pack(JoinHello{name, host, ::getpid(), this_build_id()});
    }
    const std::string ping = packed(kJoinPing);
    std::unique_ptr<TaskServer> server;  // made when the pool welcomes us
    link.send(hello.data(), hello.size());
    auto last_heard = Clock::now();
    zmq::message_t message;
    for (;;) {
        if (!link.recv(message, settings.heartbeat)) {
            const auto silence = Clock::now() - last_heard;
            if (silence >= settings.grace) {
                std::fprintf(stderr, "zmp worker %s: lost the pool at %s (nothing heard for %lld s)\n", name.c_str(),
                             settings.endpoint.c_str(), static_cast<long long>(settings.grace.count() / 1000));
                return 1;
            }
            // Silence: ask again. A pool that no longer knows this connection answers "join again".
            if (silence >= 2 * settings.heartbeat)
                link.try_send(server ? ping : std::string(hello.data(), hello.size()));
            continue;
        }
        last_heard = Clock::now();
        transport::Decoded decoded = transport::decode(static_cast<const char*>(message.data()), message.size());
        const msgpack::object& request = decoded.get();
        PoolMessage read;
        try {
            read = read_pool_message(request);
        } catch (const ProtocolError& e) {
            throw ProtocolError("malformed message from the pool at " + settings.endpoint + " (" + e.what() + ")");
        }
        const int kind = read.kind;
        if (kind == 0) {
            if (server) server->serve(request);
        } else if (read.welcome) {
            const JoinWelcome& welcome = *read.welcome;
            const bool by_name_only = welcome.build_id != this_build_id();
            server = std::make_unique<TaskServer>([&link](std::span<const iovec> parts) { link.send(parts); }, nullptr,
                                                  name, by_name_only);
            if (welcome.init.present) {
                if (auto failed = run_initializer(welcome.init, by_name_only, name))
                    link.send(failed->data(), failed->size());
            }
        } else if (kind == kJoinRefused) {
            throw ValueError("the pool at " + settings.endpoint + " dropped worker " + name + ": " + read.refusal);
        } else if (kind == kJoinAgain) {
            server.reset();  // a new session: functions are defined afresh
            link.send(hello.data(), hello.size());
        } else if (kind == kJoinRetire) {
            return 0;
        } else if (kind == kJoinRenew) {
            return kJoinRenewed;
        }
        // kJoinPing: the pool is alive, nothing to do.
    }
}

}  // namespace detail

int join_pool(const JoinOptions& options) {
    return detail::serve_joined_pool(detail::JoinSettings{options.connect, options.authkey, options.name,
                                                          options.heartbeat, options.heartbeat_timeout, options.grace});
}

namespace {

void joined_child(std::string endpoint, Authkey key, std::string name, std::int64_t grace_ms,
                  std::int64_t heartbeat_ms) {
    JoinOptions options{.connect = std::move(endpoint),
                        .authkey = key,
                        .name = std::move(name),
                        .grace = std::chrono::milliseconds(grace_ms),
                        .heartbeat = std::chrono::milliseconds(heartbeat_ms)};
    int code = 1;
    try {
        code = join_pool(options);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "zmp worker: %s\n", e.what());
    }
    zmp::exit(code);
}

// The pool asked for a fresh process in this one's place (maxtasksperchild): this program again,
// with the arguments it was started with, in this process — whatever its tasks left behind goes.
[[noreturn]] void renew_this_process(const char* program) {
    std::ifstream in("/proc/self/cmdline", std::ios::binary);
    const std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::vector<std::string> args;
    for (std::size_t at = 0; at < all.size();) {
        const std::size_t end = std::min(all.find('\0', at), all.size());
        args.push_back(all.substr(at, end - at));
        at = end + 1;
    }
    std::vector<char*> pointers;
    for (std::string& arg : args) pointers.push_back(arg.data());
    pointers.push_back(nullptr);
    detail::run_exit_hooks();  // what exit() would do: exec skips it
    std::fflush(nullptr);
    if (!args.empty()) ::execv("/proc/self/exe", pointers.data());
    std::fprintf(stderr, "%s: cannot start afresh after maxtasksperchild tasks: %s\n", program, std::strerror(errno));
    ::_exit(1);
}

}  // namespace

int worker_main(int argc, char** argv) {
    CLI::App app(
        "Joins a zmp Pool bound to a tcp endpoint (PoolOptions::bind) and runs its tasks until the pool "
        "retires it.",
        argc > 0 ? argv[0] : "zmp-worker");
    std::string endpoint, authkey_file, name;
    int processes = 1;
    std::vector<std::string> libraries;
    double grace_s = 60;
    int heartbeat_ms = 1000;
    app.add_option("--connect", endpoint, "the pool's endpoint, e.g. tcp://head:5555")->required();
    app.add_option("--authkey-file", authkey_file, "the pool's authkey file (64 hex digits, mode 0600)")
        ->envname("ZMP_AUTHKEY_FILE")
        ->required()
        ->check(CLI::ExistingFile);
    app.add_option("--processes", processes, "worker processes on this host")->check(CLI::Range(1, 4096));
    app.add_option("--name", name, "the worker's name in the pool's logs and errors (several: NAME-1, NAME-2...)");
    app.add_option("--load", libraries, "a shared library of tasks (ZMP_TASK) to load first; repeatable")
        ->check(CLI::ExistingFile);
    app.add_option("--grace", grace_s, "seconds without the pool before giving up")->check(CLI::Range(0.1, 1e6));
    app.add_option("--heartbeat", heartbeat_ms, "ZMTP heartbeat interval in ms")->check(CLI::Range(10, 600000));
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        const int code = app.exit(e);  // --help prints and is 0; errors print what is wrong
        return code == 0 ? 0 : 2;
    }
    try {
        const Authkey key = read_authkey_file(authkey_file);
        for (const std::string& library : libraries) {
            if (::dlopen(library.c_str(), RTLD_NOW | RTLD_GLOBAL) == nullptr) {
                throw ValueError("cannot load " + library + ": " + ::dlerror());
            }
        }
        const auto grace_ms = static_cast<std::int64_t>(grace_s * 1000);
        if (processes == 1) {
            const int code = join_pool({.connect = endpoint,
                                        .authkey = key,
                                        .name = name,
                                        .grace = std::chrono::milliseconds(grace_ms),
                                        .heartbeat = std::chrono::milliseconds(heartbeat_ms)});
            if (code == kJoinRenewed) renew_this_process(argc > 0 ? argv[0] : "zmp-worker");
            return code;
        }
        auto start_child = [&](int i) {
            const std::string child_name = name.empty() ? std::string() : name + "-" + std::to_string(i);
            std::optional<Process> child =
                get_context(StartMethod::fork)
                    .Process({.name = "JoinedWorker-" + std::to_string(i)}, joined_child, endpoint, key, child_name,
                             grace_ms, std::int64_t{heartbeat_ms});
            child->start();
            return child;
        };
        std::vector<std::optional<Process>> children;
        for (int i = 1; i <= processes; ++i) children.push_back(start_child(i));
        // Until every child has ended for good: one the pool renews (maxtasksperchild) is replaced.
        int code = 0;
        for (int running = processes; running > 0;) {
            std::vector<pollfd> sentinels;
            for (auto& child : children) sentinels.push_back({child ? child->sentinel() : -1, POLLIN, 0});
            if (::poll(sentinels.data(), sentinels.size(), -1) < 0) {
                if (errno == EINTR) continue;
                throw_os_error("poll on zmp-worker's children", errno);
            }
            for (std::size_t i = 0; i < children.size(); ++i) {
                if (!children[i] || sentinels[i].revents == 0) continue;
                children[i]->join();
                const int ended = children[i]->exitcode().value_or(1);
                children[i].reset();
                if (ended == kJoinRenewed) {
                    children[i] = start_child(static_cast<int>(i) + 1);
                    continue;
                }
                if (ended != 0) code = 1;
                --running;
            }
        }
        return code;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s: %s\n", argc > 0 ? argv[0] : "zmp-worker", e.what());
        return 1;
    }
}

namespace detail {
namespace {

// `program --zmp-worker ENDPOINT [worker_main's flags]` (or --zmp-worker=ENDPOINT): the program
// serves the pool at ENDPOINT as worker_main() does, and exits with its code instead of running
// its main. Only the first argument counts, so that a program's own arguments never trigger it.
void serve_pool_if_asked(int argc, char** argv) {
    if (argc < 2) return;
    const std::string_view first = argv[1];
    constexpr std::string_view flag = "--zmp-worker";
    std::vector<std::string> args{argv[0], "--connect"};
    int rest = 2;
    if (first == flag) {
        if (argc < 3) {
            std::fprintf(stderr, "%s: --zmp-worker needs the pool's endpoint, e.g. --zmp-worker tcp://head:5555\n",
                         argv[0]);
            std::exit(2);
        }
        args.emplace_back(argv[2]);
        rest = 3;
    } else if (first.starts_with(flag) && first.size() > flag.size() && first[flag.size()] == '=') {
        args.emplace_back(first.substr(flag.size() + 1));
    } else {
        return;
    }
    for (int i = rest; i < argc; ++i) args.emplace_back(argv[i]);
    std::vector<char*> pointers;
    for (std::string& arg : args) pointers.push_back(arg.data());
    pointers.push_back(nullptr);
    std::exit(worker_main(static_cast<int>(args.size()), pointers.data()));
}

}  // namespace
}  // namespace detail
}  // namespace zmp

// Registered before main runs. core/CMakeLists.txt names this symbol to the linker (--undefined),
// so that every program linking zmp keeps this file and honours --zmp-worker, whatever of the
// pool it uses itself.
extern "C" {
bool zmp_pool_worker_flag = (zmp::detail::add_init_hook(zmp::detail::serve_pool_if_asked), true);
}
