// Listener and Client (zmp/connection.hpp): Connections whose far end is in another process,
// maybe on another host, through ZeroMQ with CURVE.
//
// Each side runs a bridge thread that owns the ZeroMQ socket (a ROUTER on the Listener, one per
// Listener; a DEALER per Client) and, per connection, one end of a Unix socket pair whose other
// end is the user's Connection — so a Connection here is the very Connection a Pipe gives
// (connection_from_channel), with its EOF rule, fileno() and wait() for free. docs/design.md,
// "Listener and Client", gives the reasoning.
//
// The wire, one ZeroMQ message per event (the Listener's ROUTER prefixes the peer's routing id):
//   client -> listener  [H]            hello: a new connection, answered by [W] or [C]
//   listener -> client  [W]            welcome: accepted (it waits for accept())
//   either way          [D][payload]   one message of the Connection
//   either way          [C]            the sender's Connection closed: EOF on this side
//   listener -> client  [P]            liveness probe (the client ignores it)
// A ROUTER_MANDATORY send that fails with EHOSTUNREACH (ZeroMQ closed the connection: the peer
// hung up, or its heartbeats stopped) ends that peer; the client watches its DEALER's monitor for
// a disconnection. Either is EOF on the Connection.

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <thread>
#include <utility>

#include "base/log.hpp"
#include "base/wake_fd.hpp"
#include "pipe/connection.hpp"
#include "runtime/hooks.hpp"
#include "zmp/connection.hpp"
#include "zmp/detail/deadline.hpp"
#include "zmp/transport/fd_channel.hpp"
#include "zmp/transport/security.hpp"
#include "zmp/transport/zsocket.hpp"

namespace zmp {
namespace detail {
namespace {

using namespace std::chrono_literals;

constexpr char kHello = 'H';
constexpr char kWelcome = 'W';
constexpr char kData = 'D';
constexpr char kClose = 'C';
constexpr char kProbe = 'P';

constexpr auto kProbeInterval = 500ms;
// How long a closing bridge gives ZeroMQ to send what is queued, and a process's exit its bridges.
constexpr int kLingerMs = 5000;
constexpr auto kExitDrainLimit = 10s;
constexpr int kHeartbeatIvlMs = 1000;
constexpr int kHeartbeatTimeoutMs = 3000;
static_assert(kPeerDeathBound.count() >= kHeartbeatIvlMs + kHeartbeatTimeoutMs + 500);

// Room for a Connection's largest message (a Pipe's limit) and its kind frame.
constexpr std::int64_t kMaxFrame = static_cast<std::int64_t>(transport::kDefaultMaxChannelMessage) + 64;

struct Address {
    std::string endpoint;  // what ZeroMQ binds or connects
    std::string ipc_path;  // the socket file, for ipc
    bool tcp() const { return ipc_path.empty(); }
};

Address parse_address(const std::string& address) {
    if (address.rfind("tcp://", 0) == 0) return {address, {}};
    std::string path;
    if (address.rfind("ipc://", 0) == 0) {
        path = address.substr(6);
    } else if (address.find("://") == std::string::npos && !address.empty()) {
        path = address;
    } else {
        throw ValueError("'" + address + "' is not a Listener address: use tcp://HOST:PORT, ipc:///PATH or a path");
    }
    if (path.empty() || path.size() > transport::kMaxIpcPath)
        throw ValueError("'" + address + "': an ipc path must have 1 to " + std::to_string(transport::kMaxIpcPath) +
                         " bytes");
    return {"ipc://" + path, path};
}

transport::SocketOptions socket_options(const Address& address, bool router) {
    transport::SocketOptions options;
    options.max_message = kMaxFrame;
    options.router_mandatory = router;
    if (address.tcp()) {
        options.heartbeat_ivl_ms = kHeartbeatIvlMs;
        options.heartbeat_timeout_ms = kHeartbeatTimeoutMs;
    }
    return options;
}

// ZeroMQ's ipc bind takes over a path someone else listens on; Python's Listener refuses it.
void refuse_live_ipc_path(const std::string& path) {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) throw_os_error("socket", errno);
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::memcpy(sa.sun_path, path.data(), path.size());
    const int rc = ::connect(fd, reinterpret_cast<const sockaddr*>(&sa), sizeof sa);
    ::close(fd);
    if (rc == 0) throw OSError("address already in use: " + path + " (another Listener listens there)", EADDRINUSE);
}

bool send_frames(zmq::socket_t& socket, const std::string* routing_id, char kind, const void* payload = nullptr,
                 std::size_t size = 0) {
    std::vector<zmq::const_buffer> frames;
    if (routing_id) frames.emplace_back(routing_id->data(), routing_id->size());
    frames.emplace_back(&kind, 1);
    if (kind == kData) frames.emplace_back(payload, size);
    return transport::send_message(socket, std::move(frames));
}

std::string peer_address(zmq::message_t& frame) {
    const char* value = ::zmq_msg_gets(frame.handle(), "Peer-Address");
    return value ? value : "";
}

void warn(const std::string& text) {
    if (log_enabled(LogLevel::warning)) log_record(LogLevel::warning, text);
}

}  // namespace

// How a bridge thread is told to come round (a Listener closed, the process exits), and how it
// says it has finished.
struct BridgeControl {
    std::atomic<bool> exiting{false};
    WakeFd wake;
    std::mutex mutex;
    std::condition_variable finished_cv;
    bool finished = false;
};

namespace {

// The bridges of this process. At exit they send what their Connections hold (Python's send() is
// done once the kernel has the bytes, so a program may send and exit; here the bytes are still on
// their way through the bridge), then the process goes on exiting.
struct BridgeRegistry {
    std::mutex mutex;
    pid_t owner = 0;
    std::vector<std::shared_ptr<BridgeControl>> live;
};

BridgeRegistry& bridge_registry() {
    static auto* registry = new BridgeRegistry;  // never destroyed: bridges may outlive statics
    return *registry;
}

std::shared_ptr<BridgeControl> register_bridge() {
    arm_exit_hooks();
    auto control = std::make_shared<BridgeControl>();
    BridgeRegistry& registry = bridge_registry();
    std::lock_guard lock(registry.mutex);
    if (registry.owner != ::getpid()) {
        // A forked child: its parent's bridges are not here (the copies are the child's to drop).
        registry.live.clear();
        registry.owner = ::getpid();
    }
    std::erase_if(registry.live, [](const std::shared_ptr<BridgeControl>& c) {
        std::lock_guard l(c->mutex);
        return c->finished;
    });
    registry.live.push_back(control);
    return control;
}

void drain_bridges_at_exit() {
    std::vector<std::shared_ptr<BridgeControl>> live;
    {
        BridgeRegistry& registry = bridge_registry();
        std::lock_guard lock(registry.mutex);
        if (registry.owner != ::getpid()) return;
        live.swap(registry.live);
    }
    for (auto& control : live) {
        control->exiting.store(true);
        control->wake.notify();
    }
    const auto deadline = std::chrono::steady_clock::now() + kExitDrainLimit;
    for (auto& control : live) {
        std::unique_lock lock(control->mutex);
        control->finished_cv.wait_until(lock, deadline, [&] { return control->finished; });
    }
}

[[maybe_unused]] const bool exit_hook_registered = [] {
    add_exit_hook(drain_bridges_at_exit);
    return true;
}();

}  // namespace

// What a Listener shares with its bridge thread.
struct ListenerState {
    std::mutex mutex;
    std::condition_variable accepted_cv;
    std::deque<std::pair<Connection, std::string>> accepted;  // Connection, peer address
    bool closed = false;
    std::string address;
    std::string ipc_path;
    std::optional<std::string> last_accepted;
    pid_t owner = ::getpid();
    std::shared_ptr<BridgeControl> control;
};

namespace {

// One connection through a bridge: the bridge's end of the socket pair.
struct Peer {
    explicit Peer(transport::FdChannel ch) : channel(std::move(ch)), outbox(channel.fd()) {}
    transport::FdChannel channel;
    transport::Outbox outbox;  // messages from afar that the Connection's socket did not take yet
    bool remote_closed = false;
};

// The thread that moves messages between the ZeroMQ socket and the Connections' socket pairs.
class Bridge {
public:
    // A Listener's bridge: runs until the Listener is closed and its last peer has ended.
    Bridge(std::unique_ptr<zmq::context_t> context, zmq::socket_t socket, std::shared_ptr<transport::Authenticator> zap,
           std::shared_ptr<ListenerState> listener)
        : context_(std::move(context)),
          control_(listener->control),
          socket_(std::move(socket)),
          zap_(std::move(zap)),
          listener_(std::move(listener)) {}
    // A Client's bridge: one peer, ended by EOF on either side or a disconnection.
    Bridge(std::unique_ptr<zmq::context_t> context, std::shared_ptr<BridgeControl> control, zmq::socket_t socket,
           zmq::socket_t monitor, transport::FdChannel end)
        : context_(std::move(context)),
          control_(std::move(control)),
          socket_(std::move(socket)),
          monitor_(std::move(monitor)) {
        peers_.emplace(std::string(), std::make_unique<Peer>(std::move(end)));
    }

    void run() {
        try {
            loop();
            if (control_->exiting.load()) drain_local();
        } catch (const std::exception& e) {
            warn(std::string("zmp: a Listener/Client connection thread stopped: ") + e.what());
        }
        if (listener_) {
            std::lock_guard lock(listener_->mutex);
            listener_->closed = true;
            listener_->accepted_cv.notify_all();
        }
        // Every peer left is told its Connection ended (the process exits, or the loop failed).
        for (auto& [key, peer] : peers_) {
            if (!peer->remote_closed) (void)send_frames(socket_, rid(key), kClose);
        }
        peers_.clear();  // the Connections here see EOF
        // What is still queued (a last message, a close) goes out before the context ends: the
        // context is the bridge's own, so terminating it waits for exactly that, up to the linger.
        try {
            socket_.set(zmq::sockopt::linger, kLingerMs);
        } catch (const zmq::error_t&) {
        }
        socket_.close();
        monitor_.close();
        if (zap_) zap_->stop();
        zap_.reset();
        context_->close();
        std::lock_guard lock(control_->mutex);
        control_->finished = true;
        control_->finished_cv.notify_all();
    }

private:
    bool listening() const { return static_cast<bool>(listener_); }
    const std::string* rid(const std::string& key) const { return listening() ? &key : nullptr; }

    bool finished() {
        if (control_->exiting.load()) return true;
        if (!peers_.empty()) return false;
        if (!listening()) return true;
        std::lock_guard lock(listener_->mutex);
        return listener_->closed;
    }

    void loop() {
        auto next_probe = std::chrono::steady_clock::now() + kProbeInterval;
        std::vector<zmq::pollitem_t> items;
        std::vector<std::string> order;
        while (!finished()) {
            items.clear();
            order.clear();
            items.push_back({socket_.handle(), 0, ZMQ_POLLIN, 0});
            items.push_back({nullptr, control_->wake.fd(), ZMQ_POLLIN, 0});
            items.push_back(
                {monitor_ ? monitor_.handle() : nullptr, -1, static_cast<short>(monitor_ ? ZMQ_POLLIN : 0), 0});
            for (auto& [key, peer] : peers_) {
                short events = ZMQ_POLLIN;
                if (!peer->outbox.empty()) events |= ZMQ_POLLOUT;
                items.push_back({nullptr, peer->channel.fd(), events, 0});
                order.push_back(key);
            }
            long timeout_ms = -1;
            if (listening()) {
                const auto left = next_probe - std::chrono::steady_clock::now();
                timeout_ms = std::max<long>(0, std::chrono::duration_cast<std::chrono::milliseconds>(left).count());
            }
            const int rc = ::zmq_poll(items.data(), static_cast<int>(items.size()), timeout_ms);
            if (rc < 0) {
                if (::zmq_errno() == EINTR) continue;
                throw_os_error("zmq_poll", ::zmq_errno());
            }
            if (items[1].revents & ZMQ_POLLIN) {
                control_->wake.drain();
                if (control_->exiting.load()) return;
            }
            for (std::size_t i = 0; i < order.size(); ++i) {
                if (items[i + 3].revents != 0) on_local(order[i], items[i + 3].revents);
            }
            if (items[0].revents & ZMQ_POLLIN) on_remote();
            if (items[2].revents & ZMQ_POLLIN) on_monitor();
            if (listening() && std::chrono::steady_clock::now() >= next_probe) {
                probe();
                next_probe = std::chrono::steady_clock::now() + kProbeInterval;
            }
        }
    }

    // The process exits: what its Connections sent and this thread has not forwarded yet goes.
    void drain_local() {
        for (bool more = true; more;) {
            more = false;
            std::vector<std::string> keys;
            for (auto& [key, peer] : peers_) keys.push_back(key);
            for (const std::string& key : keys) {
                auto it = peers_.find(key);
                if (it == peers_.end() || !it->second->channel.poll(0)) continue;
                on_local(key, ZMQ_POLLIN);
                more = true;
            }
        }
    }

    // Ends a peer: closing our end of its pair is EOF for the Connection (after what it holds).
    void drop(const std::string& key) { peers_.erase(key); }

    // The peer's side is finished: deliver what is queued, then EOF.
    void remote_gone(const std::string& key) {
        auto it = peers_.find(key);
        if (it == peers_.end()) return;
        it->second->remote_closed = true;
        if (it->second->outbox.empty()) drop(key);
    }

    void on_local(const std::string& key, short revents) {
        auto it = peers_.find(key);
        if (it == peers_.end()) return;
        Peer& peer = *it->second;
        try {
            if ((revents & ZMQ_POLLOUT) && peer.outbox.flush() && peer.remote_closed) return drop(key);
            if (!(revents & (ZMQ_POLLIN | ZMQ_POLLERR))) return;
            if (!peer.channel.recv(buffer_)) {
                // Every copy of the Connection is closed.
                if (!peer.remote_closed) (void)send_frames(socket_, rid(key), kClose);
                return drop(key);
            }
            for (int fd : buffer_.fds) ::close(fd);  // a descriptor cannot cross to another host
            buffer_.fds.clear();
            if (peer.remote_closed) return;  // nobody to read it: dropped, as a socket would
            if (!send_frames(socket_, rid(key), kData, buffer_.data.get(), buffer_.size)) remote_gone(key);
        } catch (const std::exception& e) {
            warn(std::string("zmp: a Listener/Client connection failed: ") + e.what());
            if (!peer.remote_closed) (void)send_frames(socket_, rid(key), kClose);
            drop(key);
        }
    }

    // Everything waiting now, or up to 256 messages and then back to the poll (the local sides get
    // their turn).
    void on_remote(bool everything = false) {
        for (int n = 0; everything || n < 256; ++n) {
            try {
                if (!transport::recv_message(socket_, frames_, listening() ? 3 : 2, 0ms)) return;
            } catch (const ProtocolError& e) {
                warn(std::string("zmp: ignored a malformed message at a Listener/Client: ") + e.what());
                continue;
            }
            const std::size_t first = listening() ? 1 : 0;
            const std::string key = listening() ? frames_[0].to_string() : std::string();
            if (frames_.size() <= first || frames_[first].size() != 1) {
                warn("zmp: ignored a malformed message at a Listener/Client");
                continue;
            }
            const char kind = *frames_[first].data<char>();
            if (kind == kHello && listening()) {
                on_hello(key, frames_[first]);
                continue;
            }
            auto it = peers_.find(key);
            if (kind == kData && frames_.size() == first + 2) {
                if (it == peers_.end()) {
                    // A peer we do not know (one we ended, reconnecting): it is told it ended.
                    if (listening()) (void)send_frames(socket_, &key, kClose);
                    continue;
                }
                if (it->second->remote_closed) continue;
                iovec part{frames_[first + 1].data(), frames_[first + 1].size()};
                try {
                    it->second->outbox.send(std::span<const iovec>(&part, 1));
                } catch (const OSError&) {
                    // Every copy of the Connection is closed: the local side's EOF tells the peer.
                }
                continue;
            }
            if (kind == kClose && frames_.size() == first + 1) {
                remote_gone(key);
                continue;
            }
            if (kind == kProbe && !listening()) continue;
            warn("zmp: ignored a malformed message at a Listener/Client");
        }
    }

    void on_hello(const std::string& key, zmq::message_t& frame) {
        if (peers_.count(key) != 0) return;
        std::string address = listener_->ipc_path.empty() ? peer_address(frame) : std::string();
        {
            std::lock_guard lock(listener_->mutex);
            if (listener_->closed) {
                (void)send_frames(socket_, &key, kClose);
                return;
            }
        }
        auto [ours, theirs] = transport::FdChannel::pair();
        peers_.emplace(key, std::make_unique<Peer>(std::move(ours)));
        if (!send_frames(socket_, &key, kWelcome)) {
            drop(key);
            return;
        }
        std::lock_guard lock(listener_->mutex);
        listener_->accepted.emplace_back(connection_from_channel(std::move(theirs)), std::move(address));
        listener_->accepted_cv.notify_one();
    }

    void on_monitor() {
        std::vector<zmq::message_t> event;
        while (transport::recv_message(monitor_, event, 2, 0ms)) {
            std::uint16_t id = 0;
            if (!event.empty() && event[0].size() >= sizeof id) std::memcpy(&id, event[0].data(), sizeof id);
            if (id == ZMQ_EVENT_DISCONNECTED) {
                on_remote(true);  // what arrived before the disconnection is delivered first
                remote_gone(std::string());
            }
        }
    }

    void probe() {
        std::vector<std::string> gone;
        for (auto& [key, peer] : peers_) {
            if (!peer->remote_closed && !send_frames(socket_, &key, kProbe)) gone.push_back(key);
        }
        for (const std::string& key : gone) remote_gone(key);
    }

    std::unique_ptr<zmq::context_t> context_;  // the bridge's own: see run()
    std::shared_ptr<BridgeControl> control_;
    zmq::socket_t socket_;
    zmq::socket_t monitor_;
    std::shared_ptr<transport::Authenticator> zap_;  // the ROUTER's ZAP handler lives while it does
    std::shared_ptr<ListenerState> listener_;
    std::map<std::string, std::unique_ptr<Peer>> peers_;
    std::vector<zmq::message_t> frames_;
    transport::ChannelMessage buffer_;
};

void start_bridge(std::unique_ptr<Bridge> bridge) {
    // Detached: it ends by itself once its peers have (an accepted Connection outlives its
    // Listener, as in Python).
    std::thread([b = std::move(bridge)] { b->run(); }).detach();
}

std::atomic<unsigned> monitor_counter{0};

}  // namespace
}  // namespace detail

using detail::ListenerState;

Listener::Listener(const std::string& address) : Listener(address, current_authkey()) {}

Listener::Listener(const std::string& address, const Authkey& authkey) {
    const detail::Address where = detail::parse_address(address);
    if (!where.tcp()) detail::refuse_live_ipc_path(where.ipc_path);
    auto context = std::make_unique<zmq::context_t>(1);
    zmq::socket_t socket =
        transport::open_socket(*context, zmq::socket_type::router, detail::socket_options(where, true));
    auto zap = transport::Authenticator::of(*context);
    transport::apply_server_security(socket, transport::TcpSecurity::curve(authkey), *zap);
    try {
        socket.bind(where.endpoint);
    } catch (const zmq::error_t& e) {
        if (e.num() == EINVAL || e.num() == EPROTONOSUPPORT)
            throw ValueError("cannot listen at '" + address + "': " + e.what());
        throw_os_error("cannot listen at " + address, e.num());
    }
    state_ = std::make_shared<ListenerState>();
    state_->address = socket.get(zmq::sockopt::last_endpoint);
    state_->ipc_path = where.ipc_path;
    state_->control = detail::register_bridge();
    detail::start_bridge(
        std::make_unique<detail::Bridge>(std::move(context), std::move(socket), std::move(zap), state_));
}

Listener::~Listener() { close(); }
Listener::Listener(Listener&&) noexcept = default;
Listener& Listener::operator=(Listener&& other) noexcept {
    if (this != &other) {
        close();
        state_ = std::move(other.state_);
    }
    return *this;
}

Connection Listener::accept() { return *accept(forever); }

std::optional<Connection> Listener::accept(Timeout timeout) {
    if (!state_) throw OSError("listener is closed", EBADF);
    ListenerState& st = *state_;
    if (st.owner != ::getpid()) throw OSError("a Listener accepts only in the process that made it", EBADF);
    const auto deadline = detail::Deadline::after(timeout);
    std::unique_lock lock(st.mutex);
    for (;;) {
        if (st.closed) throw OSError("listener is closed", EBADF);
        if (!st.accepted.empty()) {
            auto [conn, peer] = std::move(st.accepted.front());
            st.accepted.pop_front();
            st.last_accepted = std::move(peer);
            return conn;
        }
        if (deadline.passed()) return std::nullopt;
        if (!timeout) {
            st.accepted_cv.wait(lock);
        } else {
            st.accepted_cv.wait_for(lock, std::chrono::milliseconds(std::max(1, deadline.poll_ms())));
        }
    }
}

void Listener::close() {
    if (!state_) return;
    ListenerState& st = *state_;
    std::deque<std::pair<Connection, std::string>> unaccepted;
    {
        std::lock_guard lock(st.mutex);
        if (st.closed) return;
        st.closed = true;
        unaccepted.swap(st.accepted);
        st.accepted_cv.notify_all();
    }
    for (auto& item : unaccepted) item.first.close();  // their clients see EOF
    if (st.owner != ::getpid()) return;                // a forked copy: the parent's thread goes on
    if (!st.ipc_path.empty()) ::unlink(st.ipc_path.c_str());
    st.control->wake.notify();
}

bool Listener::closed() const {
    if (!state_) return true;
    std::lock_guard lock(state_->mutex);
    return state_->closed;
}

std::string Listener::address() const {
    if (!state_) throw OSError("listener is closed", EBADF);
    return state_->address;
}

std::optional<std::string> Listener::last_accepted() const {
    if (!state_) return std::nullopt;
    std::lock_guard lock(state_->mutex);
    return state_->last_accepted;
}

Connection Client(const std::string& address, std::chrono::milliseconds timeout) {
    return Client(address, current_authkey(), timeout);
}

Connection Client(const std::string& address, const Authkey& authkey, std::chrono::milliseconds timeout) {
    using namespace std::chrono_literals;
    const detail::Address where = detail::parse_address(address);
    // The bridge's own context (docs/design.md, "Listener and Client"): one I/O thread.
    auto owned_context = std::make_unique<zmq::context_t>(1);
    zmq::context_t& context = *owned_context;
    zmq::socket_t socket =
        transport::open_socket(context, zmq::socket_type::dealer, detail::socket_options(where, false));
    transport::apply_client_security(socket, transport::TcpSecurity::curve(authkey));
    const auto deadline = detail::Deadline::after(Seconds(timeout));
    for (;;) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline.remaining());
        const auto attempt = std::clamp(left, 1ms, 1000ms);
        if (transport::connect_and_authenticate(context, socket, where.endpoint, attempt) ==
            transport::Handshake::succeeded)
            break;
        if (deadline.passed()) throw OSError("no Listener answers at " + address, ECONNREFUSED);
    }
    // Watch for the connection's end from now on (the handshake's monitor is detached).
    const std::string monitor_endpoint = "inproc://zmp.client-monitor." + std::to_string(::getpid()) + "." +
                                         std::to_string(detail::monitor_counter.fetch_add(1));
    if (::zmq_socket_monitor(socket.handle(), monitor_endpoint.c_str(), ZMQ_EVENT_DISCONNECTED) != 0)
        throw_os_error("zmq_socket_monitor", ::zmq_errno());
    zmq::socket_t monitor(context, zmq::socket_type::pair);
    monitor.set(zmq::sockopt::linger, 0);
    monitor.connect(monitor_endpoint);

    (void)detail::send_frames(socket, nullptr, detail::kHello);
    std::vector<zmq::message_t> reply;
    const auto answer_wait =
        std::max(std::chrono::duration_cast<std::chrono::milliseconds>(deadline.remaining()), 5000ms);
    if (!transport::recv_message(socket, reply, 2, answer_wait))
        throw OSError("the Listener at " + address + " did not answer", ETIMEDOUT);
    if (reply.size() != 1 || reply[0].size() != 1 || *reply[0].data<char>() != detail::kWelcome)
        throw OSError("the Listener at " + address + " is closed", ECONNREFUSED);

    auto [ours, theirs] = transport::FdChannel::pair();
    detail::start_bridge(std::make_unique<detail::Bridge>(std::move(owned_context), detail::register_bridge(),
                                                          std::move(socket), std::move(monitor), std::move(ours)));
    return detail::connection_from_channel(std::move(theirs));
}

}  // namespace zmp
