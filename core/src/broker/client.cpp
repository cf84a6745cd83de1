#include "broker/client.hpp"

#include <pthread.h>
#include <sys/random.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <unordered_map>

#include "runtime/hooks.hpp"
#include "runtime/identity.hpp"
#include "runtime/pidfd.hpp"
#include "runtime/run.hpp"
#include "runtime/zmq_context.hpp"
#include "base/fork.hpp"
#include "base/thread_id.hpp"
#include "broker/arena.hpp"
#include "broker/status.hpp"
#include "zmp/errors.hpp"
#include "zmp/transport/zsocket.hpp"

namespace zmp::detail::broker {
namespace {

// The first reply from a broker is awaited at most this long: an endpoint nobody serves must
// not hang its caller. Afterwards the broker's pidfd tells when it is gone.
constexpr std::chrono::seconds kHelloTimeout{60};
// An exiting process does not wait longer than this to tell the broker what it keeps.
constexpr std::chrono::seconds kExitTimeout{5};
// A remote broker that did not accept a reference channel is not asked again for this long.
constexpr std::chrono::seconds kRefRetryAfter{30};
// Once a connection to a remote broker was lost, a new one is awaited at most this long: a broker
// that was killed or stopped is reported as gone within about this time rather than after the
// link's join timeout (a broker that restarts has forgotten its objects anyway).
constexpr std::chrono::milliseconds kReconnectTimeout{500};

// Links by endpoint. The mutex is held across fork() so that a child never inherits it locked.
std::mutex registry_mutex;
std::unordered_map<std::string, BrokerLink*>* registry = nullptr;
// Remote links by the name their broker gave (registry_mutex). Not in `registry`: every link
// appears there once, for the fork handlers.
std::unordered_map<std::string, BrokerLink*>* aliases = nullptr;

// The number a remote client says HELLO with: random for each process (a pid means nothing to a
// broker on another host) and new after each fork. Derived from a per-process random seed
// (inherited by fork) with the pid and fork generation, so that it needs no lock.
std::uint64_t incarnation() {
    static std::atomic<std::uint64_t> seed{0};
    std::uint64_t s = seed.load(std::memory_order_acquire);
    if (s == 0) {
        std::uint64_t fresh = 0;
        while (::getrandom(&fresh, sizeof fresh, 0) != sizeof fresh) {
            if (errno != EINTR) throw_os_error("getrandom", errno);
        }
        fresh |= 1;
        if (seed.compare_exchange_strong(s, fresh, std::memory_order_acq_rel)) s = fresh;
    }
    // splitmix64 of the seed, pid and fork generation.
    std::uint64_t x =
        s ^ (static_cast<std::uint64_t>(current_pid()) << 32) ^ (fork_generation() * 0x9e3779b97f4a7c15ULL);
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return (x & 0x7fffffffffffffffULL) | 1;
}

// A forked child starts with none: the connections were its parent's (the runtime abandons their
// sockets).
struct ThreadConns {
    std::vector<std::pair<BrokerLink*, std::unique_ptr<LinkConn>>> conns;
    // In a forked child: the sockets belong to the parent's context, never to be closed here.
    void abandon() {
        for (auto& [link, c] : conns) {
            (void)c->owned_socket.release();
            (void)c->monitor.release();
        }
    }
};

// A PAIR that receives `socket`'s DISCONNECTED events.
zmq::socket_t watch_disconnects(zmq::context_t& context, zmq::socket_t& socket) {
    static std::atomic<std::uint64_t> counter{0};
    const std::string address =
        "inproc://zmp-broker-link-" + std::to_string(::getpid()) + "-" + std::to_string(++counter);
    if (zmq_socket_monitor(socket.handle(), address.c_str(), ZMQ_EVENT_DISCONNECTED) != 0)
        throw_os_error("zmq_socket_monitor", zmq_errno());
    zmq::socket_t pair(context, zmq::socket_type::pair);
    pair.set(zmq::sockopt::linger, 0);
    pair.connect(address);
    return pair;
}
thread_local ForkLocal<ThreadConns> thread_conns;

std::vector<BrokerLink*> all_links();

void keep_all_holdings() {
    for (BrokerLink* link : all_links()) link->keep_holdings();
}

std::vector<BrokerLink*> all_links() {
    std::vector<BrokerLink*> links;
    std::lock_guard lock(registry_mutex);
    if (registry != nullptr)
        for (auto& [endpoint, link] : *registry) links.push_back(link);
    return links;
}

// A process that exits normally first makes sure the broker has every reference message it sent
// (a handle it sent just before must not die with it).
void sync_all_references() {
    for (BrokerLink* link : all_links()) link->sync_references(kExitTimeout);
}

// fork(): the registry and every link's reference channel are held across it, and the child gets
// its own references to everything this process holds (handle.hpp).
void fork_prepare() {
    registry_mutex.lock();
    if (registry != nullptr)
        for (auto& [endpoint, link] : *registry) link->fork_prepare();
}
void fork_parent() {
    if (registry != nullptr)
        for (auto& [endpoint, link] : *registry) link->fork_parent();
    registry_mutex.unlock();
}
void fork_child() {
    if (registry != nullptr)
        for (auto& [endpoint, link] : *registry) link->fork_child();
    registry_mutex.unlock();
}

// Before the root's first child starts, its broker must be up: the child may create objects. Before
// any child starts, the links it inherits handles of are ready to hand it its references. At a
// normal exit (of any process: forked children inherit the hooks), semaphore units taken stay
// taken, and reference messages sent are delivered.
const bool hooks_registered = [] {
    add_start_hook([] {
        if (this_run().is_root()) (void)ensure_broker();
        for (BrokerLink* link : all_links())
            if (link->live_handles.load() > 0) link->prepare_children();
    });
    add_exit_hook(keep_all_holdings);
    add_exit_hook(sync_all_references);
    on_fork(ForkLayer::service, {fork_prepare, fork_parent, fork_child});
    return true;
}();

}  // namespace

pid_t current_pid() { return this_process().pid(); }

std::uint32_t current_tid() { return current_thread_id(); }

const Reply& checked(const Reply& reply) {
    switch (reply.status) {
        case Status::ok:
        case Status::registered:
        case Status::run_action:
            return reply;
        case Status::value_error:
            throw ValueError(reply.text);
        case Status::broken_barrier:
            throw BrokenBarrierError(reply.text);
        case Status::full:
            throw Full(reply.text);
        case Status::empty:
            throw Empty(reply.text);
        case Status::protocol_error:
            break;
    }
    throw ProtocolError("the broker refused a request: " + reply.text);
}

BrokerLink& BrokerLink::get(const std::string& endpoint) {
    std::lock_guard lock(registry_mutex);
    if (registry == nullptr) registry = new std::unordered_map<std::string, BrokerLink*>();
    auto it = registry->find(endpoint);
    if (it != registry->end()) return *it->second;
    if (aliases != nullptr) {
        if (auto alias = aliases->find(endpoint); alias != aliases->end()) return *alias->second;
    }
    return *registry->emplace(endpoint, new BrokerLink(endpoint)).first->second;
}

BrokerLink& BrokerLink::named(const std::string& name) {
    {
        std::lock_guard lock(registry_mutex);
        if (registry != nullptr) {
            if (auto it = registry->find(name); it != registry->end()) return *it->second;
        }
        if (aliases != nullptr) {
            if (auto it = aliases->find(name); it != aliases->end()) return *it->second;
        }
    }
    if (name.rfind("ipc://", 0) == 0 || name.rfind("tcp://", 0) == 0) return get(name);
    throw ProtocolError("received a handle of the broker \"" + name +
                        "\", which this process has not joined (zmp::connect)");
}

BrokerLink& BrokerLink::join(const std::string& endpoint, const transport::TcpSecurity& security,
                             std::chrono::milliseconds timeout) {
    if (endpoint.rfind("tcp://", 0) != 0) throw ValueError("zmp::connect: " + endpoint + " is not a tcp:// endpoint");
    BrokerLink& link = get(endpoint);
    {
        std::lock_guard lock(link.remote_mutex_);
        const bool same =
            link.security_ && link.security_->is_insecure() == security.is_insecure() &&
            (security.is_insecure() || link.security_->keys().client_public == security.keys().client_public);
        if (link.joined_ && !same)
            throw ValueError("zmp::connect: already joined " + endpoint + " with other credentials");
        link.security_ = security;
        link.connect_timeout_ = timeout;
    }
    try {
        (void)link.client_index();  // connects and says HELLO: fails now rather than at first use
    } catch (...) {
        std::lock_guard lock(link.remote_mutex_);
        if (!link.joined_) link.security_.reset();  // refused, or nobody answered: another try may differ
        throw;
    }
    std::lock_guard lock(link.remote_mutex_);
    link.joined_ = true;
    return link;
}

std::string BrokerLink::name() const {
    if (!remote_) return endpoint_;
    std::lock_guard lock(remote_mutex_);
    return name_.empty() ? endpoint_ : name_;
}

void BrokerLink::connect_remote(zmq::context_t& context, zmq::socket_t& socket,
                                std::chrono::milliseconds timeout) const {
    std::optional<transport::TcpSecurity> security;
    {
        std::lock_guard lock(remote_mutex_);
        security = security_;
    }
    if (!security) security = transport::TcpSecurity::curve(this_run().authkey());
    transport::apply_client_security(socket, *security);
    const Deadline deadline = Deadline::after(timeout);
    for (;;) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline.remaining());
        const auto attempt = std::clamp(left, std::chrono::milliseconds(1), std::chrono::milliseconds(1000));
        if (transport::connect_and_authenticate(context, socket, endpoint_, attempt) == transport::Handshake::succeeded)
            return;
        if (deadline.passed()) throw BrokerLost("no broker answers at " + endpoint_);
    }
}

BrokerLink& BrokerLink::local() { return get(ensure_broker()); }

std::uint32_t BrokerLink::client_index() {
    if (registered_generation_.load(std::memory_order_acquire) != fork_generation()) (void)conn();
    return index_.load(std::memory_order_relaxed);
}

Arena* BrokerLink::arena(const std::string& prefix) {
    if (prefix.empty()) return nullptr;
    Arena* current = arena_.load(std::memory_order_acquire);
    if (current == nullptr) {
        // Lock-free, so that fork() never leaves a lock held (mapping happens later, on use).
        auto fresh = std::make_unique<Arena>(prefix, Arena::Role::client);
        if (arena_.compare_exchange_strong(current, fresh.get(), std::memory_order_acq_rel)) current = fresh.release();
    }
    if (current->prefix() != prefix) throw ProtocolError("a handle names another arena than its broker's");
    return current;
}

zmq::socket_t BrokerLink::connect(zmq::context_t& context) const {
    std::chrono::milliseconds timeout;
    {
        std::lock_guard lock(remote_mutex_);
        timeout = connect_timeout_;
    }
    if (lost_connection_.load(std::memory_order_relaxed)) timeout = std::min(timeout, kReconnectTimeout);
    return connect(context, timeout);
}

zmq::socket_t BrokerLink::connect(zmq::context_t& context, std::chrono::milliseconds remote_timeout) const {
    std::string address = embedded_inproc_endpoint(endpoint_);
    if (address.empty()) address = endpoint_;
    transport::SocketOptions options;
    options.max_message = kMaxBatchFrame;
    if (remote_) {
        options.heartbeat_ivl_ms = static_cast<int>(kHeartbeatIvl.count());
        options.heartbeat_timeout_ms = static_cast<int>(kHeartbeatTimeout.count());
    }
    zmq::socket_t socket = transport::open_socket(context, zmq::socket_type::dealer, options);
    if (remote_) {
        connect_remote(context, socket, remote_timeout);
        return socket;
    }
    try {
        socket.connect(address);
    } catch (const zmq::error_t& e) {
        throw_os_error("cannot connect to the broker at " + address, e.num());
    }
    return socket;
}

LinkConn::~LinkConn() {
    if (monitor && owned_socket) (void)zmq_socket_monitor(owned_socket->handle(), nullptr, 0);
}

bool LinkConn::disconnected() {
    if (!monitor) return false;
    std::vector<zmq::message_t> frames;
    while (transport::recv_message(*monitor, frames, 2, std::chrono::milliseconds(0))) lost = true;
    return lost;
}

LinkConn& BrokerLink::conn() {
    ThreadConns& mine = thread_conns.get();
    for (auto it = mine.conns.begin(); it != mine.conns.end(); ++it) {
        if (it->first != this) continue;
        // A connection that was closed meanwhile (even while nobody waited on it) is made afresh:
        // the broker forgot it, and events left unread would pile up.
        if (!it->second->disconnected()) return *it->second;
        lost_connection_.store(true, std::memory_order_relaxed);
        mine.conns.erase(it);  // closes its sockets; a new connection says HELLO again
        break;
    }

    auto c = std::make_unique<LinkConn>();
    if (remote_) {
        c->owned_socket = std::make_unique<zmq::socket_t>(connect(zmq_context()));
        c->socket = *c->owned_socket;
        c->monitor = std::make_unique<zmq::socket_t>(watch_disconnects(zmq_context(), *c->owned_socket));
    } else {
        c->socket = thread_socket("zmp.broker " + endpoint_, [&](zmq::context_t& context) { return connect(context); });
    }
    hello_on(*c);
    mine.conns.emplace_back(this, std::move(c));
    return *mine.conns.back().second;
}

void BrokerLink::hello_on(LinkConn& c) {
    // Who this process is, for zmp-status (broker/status.hpp): its name, and its host across hosts.
    std::string identity = pack_hello_identity(HelloIdentity{this_process().name(), remote_ ? this_host_name() : ""});
    const std::uint64_t rid =
        remote_ ? send_on(c, Op::hello, 0, {current_pid(), current_tid(), static_cast<std::int64_t>(incarnation())},
                          &identity)
                : send_on(c, Op::hello, 0, {current_pid(), current_tid()}, &identity);
    const Reply hello = receive_on(c, rid, Deadline::after(kHelloTimeout));
    if (hello.status != Status::ok)
        throw ProcessError("the broker at " + endpoint_ + " refused this process: " + hello.text);
    index_.store(static_cast<std::uint32_t>(hello.value(0)), std::memory_order_relaxed);
    if (remote_) {
        // No arena and no pidfd across hosts: only the broker's name, which its handles carry.
        if (!hello.text.empty() && hello.text != endpoint_) {
            {
                std::lock_guard lock(remote_mutex_);
                name_ = hello.text;
            }
            std::lock_guard lock(registry_mutex);
            if (aliases == nullptr) aliases = new std::unordered_map<std::string, BrokerLink*>();
            aliases->emplace(hello.text, this);
        }
        registered_generation_.store(fork_generation(), std::memory_order_release);
        return;
    }
    const auto broker_pid = static_cast<pid_t>(hello.value(1));
    const bool same_host = endpoint_.rfind("ipc://", 0) == 0;
    if (same_host && broker_pid != current_pid() && broker_pid != broker_pid_.load()) {
        // Watched while waiting for replies: a broker that dies fails the wait instead of hanging it.
        const int fd = open_pidfd(broker_pid);
        const int old = broker_pidfd_.exchange(fd);
        if (old >= 0) ::close(old);
        broker_pid_.store(broker_pid);
    }
    if (!hello.text.empty()) (void)arena(hello.text);
    registered_generation_.store(fork_generation(), std::memory_order_release);
}

// ---- references --------------------------------------------------------------------------------

LinkConn& BrokerLink::ref_channel() {
    const std::uint64_t generation = fork_generation();
    if (ref_conn_ != nullptr && ref_generation_ == generation) return *ref_conn_;
    // A forked child never touches its parent's channel: its socket is abandoned, not closed.
    (void)ref_conn_.release();
    ref_socket_ = nullptr;
    ref_unsynced_ = false;
    // Reference traffic comes from destructors (drop): to a remote broker that does not answer it
    // gives up after kExitTimeout, and fails at once for a while after that.
    if (remote_ && std::chrono::steady_clock::now() < ref_retry_at_)
        throw BrokerLost("the broker at " + endpoint_ + " did not answer a moment ago");
    std::unique_ptr<zmq::socket_t> socket;
    try {
        socket =
            std::make_unique<zmq::socket_t>(remote_ ? connect(zmq_context(), kExitTimeout) : connect(zmq_context()));
    } catch (const BrokerLost&) {
        ref_retry_at_ = std::chrono::steady_clock::now() + kRefRetryAfter;
        throw;
    }
    auto c = std::make_unique<LinkConn>();
    c->socket = *socket;
    hello_on(*c);
    ref_socket_ = socket.release();
    ref_conn_ = std::move(c);
    ref_generation_ = generation;
    return *ref_conn_;
}

void BrokerLink::post_ref(Op op, std::uint64_t object, std::initializer_list<std::int64_t> args) {
    LinkConn& c = ref_channel();
    (void)send_on(c, op, object, args, nullptr, false);
    ref_unsynced_ = true;
    // Nothing is answered here but a refusal (a broker that forgot this connection): read and
    // dropped, so that none piles up.
    std::vector<zmq::message_t> frames;
    while (transport::recv_message(c.socket, frames, 2, std::chrono::milliseconds(0))) {
    }
}

std::uint64_t BrokerLink::hold_for_message(std::uint64_t object) {
    std::lock_guard lock(ref_mutex_);
    if (token_generation_ != fork_generation()) {
        std::uint64_t seed = 0;
        while (::getrandom(&seed, sizeof seed, 0) != sizeof seed) {
            if (errno != EINTR) throw_os_error("getrandom", errno);
        }
        token_seed_ = seed;
        token_generation_ = fork_generation();
    }
    std::uint64_t token = token_seed_ + ++tokens_;
    if (token == 0) token = token_seed_ + ++tokens_;
    post_ref(Op::ref_hold, object, {static_cast<std::int64_t>(token)});
    return token;
}

void BrokerLink::claim(std::uint64_t object, std::uint64_t token) {
    std::lock_guard lock(ref_mutex_);
    post_ref(Op::ref_claim, object, {static_cast<std::int64_t>(token)});
}

void BrokerLink::drop(std::uint64_t object) noexcept {
    try {
        std::lock_guard lock(ref_mutex_);
        post_ref(Op::ref_drop, object, {});
    } catch (...) {
        // The broker is gone, or this process is past its exit: nothing is left to free.
    }
}

void BrokerLink::sync_references(std::chrono::milliseconds timeout) noexcept {
    try {
        std::lock_guard lock(ref_mutex_);
        if (ref_conn_ == nullptr || ref_generation_ != fork_generation() || !ref_unsynced_) return;
        LinkConn& c = *ref_conn_;
        (void)receive_on(c, send_on(c, Op::ref_sync, 0, {}), Deadline::after(timeout));
        ref_unsynced_ = false;
    } catch (...) {
        // The broker is gone (or too slow for an exiting process).
    }
}

void BrokerLink::prepare_children() {
    std::lock_guard lock(ref_mutex_);
    (void)ref_channel();
    if (Arena* a = arena()) (void)a->client(index_.load());
}

void BrokerLink::fork_prepare() {
    ref_mutex_.lock();
    fork_entry_ = nullptr;
    Arena* a = arena();
    if (live_handles.load() <= 0 || ref_conn_ == nullptr || ref_generation_ != fork_generation() || a == nullptr)
        return;
    // A child made without zmp (popen, system) gets the same: it holds copies of the handles too.
    ClientRecord& record = a->client(index_.load());
    const std::uint64_t token = (token_seed_ + ++tokens_) | 1;
    for (std::uint32_t i = 0; i < kForkEntries; ++i) {
        std::uint64_t expected = 0;
        if (record.forks[i].token.compare_exchange_strong(expected, token, std::memory_order_acq_rel)) {
            record.forks[i].child.store(0, std::memory_order_release);
            fork_entry_ = &record.forks[i];
            fork_entry_index_ = i;
            fork_token_ = token;
            return;
        }
    }
    // Every entry is in use (many forks the broker has not seen yet): this child relies on the
    // references of this process.
}

void BrokerLink::fork_parent() {
    if (fork_entry_ != nullptr) {
        try {
            post_ref(Op::fork_hold, 0, {fork_entry_index_, static_cast<std::int64_t>(fork_token_)});
        } catch (...) {
            fork_entry_->token.store(0, std::memory_order_release);
        }
        fork_entry_ = nullptr;
    }
    ref_mutex_.unlock();
}

void BrokerLink::fork_child() {
    if (fork_entry_ != nullptr) {
        fork_entry_->child.store(static_cast<std::uint32_t>(::getpid()), std::memory_order_release);
        fork_entry_ = nullptr;
    }
    ref_mutex_.unlock();
}

std::uint64_t BrokerLink::send_on(LinkConn& c, Op op, std::uint64_t object, std::initializer_list<std::int64_t> args,
                                  std::string* payload, bool awaited) {
    (void)embedded_inproc_endpoint(endpoint_);  // raises once this process's own broker has stopped
    const std::uint64_t rid = c.next_rid++;
    msgpack::sbuffer out(64);
    encode_request(out, op, object, rid, args);
    bool sent;
    if (payload != nullptr) {
        std::vector<zmq::message_t> frames;
        frames.emplace_back(out.data(), out.size());
        frames.push_back(transport::owned_frame(std::move(*payload)));
        sent = transport::send_message(c.socket, frames);
    } else {
        sent = transport::send_message(c.socket, {zmq::const_buffer(out.data(), out.size())});
    }
    if (!sent) throw BrokerLost("cannot send to the broker at " + endpoint_);
    if (awaited) c.awaited.push_back(rid);
    return rid;
}

Reply BrokerLink::receive_on(LinkConn& c, std::uint64_t rid, const Deadline& deadline) {
    auto done = [&](Reply r) {
        if (r.status != Status::registered) std::erase(c.awaited, rid);  // a second answer follows "registered"
        return r;
    };
    for (auto it = c.stash.begin(); it != c.stash.end(); ++it) {
        if (it->rid == rid) {
            Reply r = std::move(*it);
            c.stash.erase(it);
            return done(std::move(r));
        }
    }
    std::vector<zmq::message_t> frames;
    for (;;) {
        zmq_pollitem_t items[2] = {{c.socket.handle(), 0, ZMQ_POLLIN, 0},
                                   {nullptr, broker_pidfd_.load(), ZMQ_POLLIN, 0}};
        if (c.monitor) items[1] = {c.monitor->handle(), 0, ZMQ_POLLIN, 0};
        const int n = items[1].fd >= 0 || items[1].socket != nullptr ? 2 : 1;
        const int rc = zmq_poll(items, n, deadline.poll_ms());
        if (rc < 0) {
            if (zmq_errno() == EINTR) continue;
            throw_os_error("zmq_poll", zmq_errno());
        }
        if (rc == 0 && deadline.passed()) {
            throw BrokerLost("no answer from the broker at " + endpoint_);
        }
        while (transport::recv_message(c.socket, frames, 2, std::chrono::milliseconds(0))) {
            Reply r = decode_reply(frames[0].data(), frames[0].size());
            if (frames.size() == 2) r.payload = std::move(frames[1]);
            if (r.rid == rid) return done(std::move(r));
            if (std::find(c.awaited.begin(), c.awaited.end(), r.rid) != c.awaited.end())
                c.stash.push_back(std::move(r));
            // Anything else answers a request nobody waits for any more: dropped.
        }
        if (n == 2 && (items[1].revents & ZMQ_POLLIN) != 0 && c.monitor) {
            // Only DISCONNECTED events are asked for: the connection is gone, and with it what
            // the broker had for this connection.
            c.lost = true;
            lost_connection_.store(true, std::memory_order_relaxed);
            throw BrokerLost("lost the connection to the broker at " + endpoint_ +
                             " (it stopped, or its host stopped answering heartbeats)");
        }
        if (n == 2 && (items[1].revents & ZMQ_POLLIN) != 0) {
            throw BrokerLost("the broker is gone (its process, pid " + std::to_string(broker_pid_.load()) + ", died)");
        }
    }
}

void BrokerLink::note_broker_holding() { holdings_generation_.store(fork_generation(), std::memory_order_relaxed); }

void BrokerLink::keep_holdings() {
    const std::uint64_t generation = fork_generation();
    if (registered_generation_.load() != generation) return;  // never talked to this broker
    if (Arena* a = arena()) {
        for (auto& entry : a->client(index_.load()).holdings) entry.store(0, std::memory_order_relaxed);
    }
    if (holdings_generation_.load() != generation) return;
    try {
        // A connection of its own: at exit() the thread's cached sockets may already be gone.
        zmq::socket_t socket = connect(zmq_context(), kExitTimeout);
        LinkConn c;
        c.socket = socket;
        const std::uint64_t hello_rid =
            remote_ ? send_on(c, Op::hello, 0, {current_pid(), current_tid(), static_cast<std::int64_t>(incarnation())})
                    : send_on(c, Op::hello, 0, {current_pid(), current_tid()});
        (void)receive_on(c, hello_rid, Deadline::after(kExitTimeout));
        checked(receive_on(c, send_on(c, Op::keep_holdings, 0, {}), Deadline::after(kExitTimeout)));
    } catch (const ProcessError&) {
        // The broker is gone (or too slow for an exiting process): nothing to keep.
    }
}

std::uint64_t BrokerLink::send(Op op, std::uint64_t object, std::initializer_list<std::int64_t> args) {
    return send_on(conn(), op, object, args);
}

Reply BrokerLink::receive(std::uint64_t rid) { return receive_on(conn(), rid, Deadline::never()); }

Reply BrokerLink::call(Op op, std::uint64_t object, std::initializer_list<std::int64_t> args) {
    LinkConn& c = conn();
    Reply r = receive_on(c, send_on(c, op, object, args), Deadline::never());
    checked(r);
    return r;
}

Reply BrokerLink::call(Op op, std::uint64_t object, std::initializer_list<std::int64_t> args, std::string payload) {
    LinkConn& c = conn();
    Reply r = receive_on(c, send_on(c, op, object, args, &payload), Deadline::never());
    checked(r);
    return r;
}

void BrokerLink::post(Op op, std::uint64_t object, std::initializer_list<std::int64_t> args) {
    (void)send_on(conn(), op, object, args, nullptr, false);
}

}  // namespace zmp::detail::broker
