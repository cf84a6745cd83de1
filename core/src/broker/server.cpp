// The broker's server: the loop, clients and their connections, requests and replies, waiters and
// timers. What each kind of object means is in objects/ (objects/object.hpp is the contract).
#include "broker/server.hpp"

#include <poll.h>
#include <sys/random.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <unordered_map>
#include <vector>

#include "base/wake_fd.hpp"
#include "runtime/identity.hpp"
#include "runtime/pidfd.hpp"
#include "broker/arena.hpp"
#include "broker/events.hpp"
#include "broker/fast_path.hpp"
#include "broker/objects/kinds.hpp"
#include "broker/protocol.hpp"
#include "broker/status.hpp"
#include "zmp/errors.hpp"
#include "zmp/transport/zsocket.hpp"

namespace zmp::detail::broker {

namespace {
constexpr std::size_t kMaxClients = kMaxClientRecords - 1;

// References set aside for the receivers of messages (REF_HOLD) and never claimed are released
// this long after their sender died, or as soon as their sender has more than kMaxHolds of them
// out (the oldest first).
constexpr auto kHoldGrace = std::chrono::seconds(30);
constexpr std::size_t kMaxHolds = 65536;
// A claim that arrives before the hold it names (the two come from different processes) is kept
// this long, so that the hold, when it comes, is taken at once; at most kMaxEarlyClaims of them.
constexpr auto kEarlyClaimLife = std::chrono::seconds(60);
constexpr std::size_t kMaxEarlyClaims = 65536;
// A fork the broker cannot bind to its child (no pid written in the parent's fork entry) within
// this long is given up, and the references held for it are released.
constexpr auto kForkBindLimit = std::chrono::seconds(10);
constexpr auto kForkRetry = std::chrono::milliseconds(1);

// Memory a client can make the broker keep (README, "The broker"). Answers wait for a connection
// that does not read them up to kSendHwm; beyond, they are dropped (a client that does not read
// its answers gets none: it is misbehaving). A connection's requests are read as they come, up to
// kRecvHwm waiting. A process's connections are probed when they pass kProbeFirst, then each time
// they double: those whose socket is closed are forgotten; at most kMaxConnections live ones. A
// process waits on at most kMaxWaits requests at once.
constexpr int kSendHwm = 64;
constexpr int kRecvHwm = 1000;
constexpr std::size_t kProbeFirst = 64;
constexpr std::size_t kMaxConnections = 4096;
constexpr std::uint32_t kMaxWaits = 65536;

// Keys of remote clients in `clients` have this bit; local ones are pids.
constexpr std::uint64_t kRemoteKey = std::uint64_t{1} << 63;
// A connection is named by its socket (one byte: 0 for the main ROUTER, i for the i-th tcp one)
// followed by the routing id that socket gave it: two ROUTERs number their peers independently.
constexpr char kMainSocket = 0;
}  // namespace

struct Client {
    pid_t pid = 0;
    std::uint64_t key = 0;  // in `clients`: the pid, or (remote) kRemoteKey | its incarnation
    bool remote = false;    // came over tcp: no pidfd, no arena; liveness by probes
    int pidfd = -1;         // -1 for the broker's own process and for remote clients
    std::uint32_t index = 0;
    std::vector<std::string> peers;                        // routing ids of its connections
    std::unordered_map<std::uint64_t, std::int64_t> refs;  // references it holds, by object
    std::deque<std::uint64_t> holds;                       // tokens it set aside, oldest first
    std::size_t holds_out = 0;                             // of them, not claimed yet
    std::size_t probe_at = kProbeFirst;                    // peers.size() that triggers a probe
    std::uint32_t waiting = 0;                             // its waiters
    std::string name;                                      // as its latest HELLO told (for zmp-status)
    std::string host;                                      // a remote client's, as its HELLO told
};

namespace {

// One connection (a thread of a client process).
struct Peer {
    Client* client = nullptr;
    std::uint32_t tid = 0;
    std::vector<std::uint64_t> objects;  // objects with state for this connection (note_connection_state)
};

// An object and the server's books on it.
struct Entry {
    std::unique_ptr<Object> object;
    std::int64_t refs = 0;  // references held by clients, set aside in messages, or kept for forks
    std::uint32_t waiters = 0;
};

// A reference set aside for the receiver of a message.
struct Hold {
    std::uint64_t object = 0;
    Client* sender = nullptr;  // nullptr once its sender died
};

// The references of a parent, kept for its child until the broker learns the child's pid.
struct Adoption {
    Client* parent = nullptr;
    std::uint32_t entry = 0;
    std::uint64_t token = 0;
    std::vector<std::pair<std::uint64_t, std::int64_t>> refs;
    Clock::time_point since{};
};

// HELLO's optional second frame (broker/status.hpp, pack_hello_identity): the process's name and
// host, kept for zmp-status. One that cannot be read is ignored: it only feeds the status.
void read_hello_identity(std::string_view payload, Client& client) {
    HelloIdentity who;
    if (!unpack_hello_identity(payload, who)) return;
    client.name = std::move(who.name);
    if (client.remote) client.host = std::move(who.host);
}

// A kind's entry with its ops as a table, for dispatch.
struct KindTable {
    const KindEntry* entry = nullptr;
    std::array<OpHandler, kLastOp + 1> ops{};
};

const KindTable& kind_table(Kind kind) {
    static const auto tables = [] {
        std::array<KindTable, kLastKind + 1> all{};
        for (std::size_t k = 1; k <= kLastKind; ++k) {
            KindTable& t = all[k];
            t.entry = find_kind(static_cast<Kind>(k));
            if (t.entry == nullptr) continue;
            for (const auto& [op, handler] : t.entry->ops) t.ops[static_cast<std::size_t>(op)] = handler;
        }
        return all;
    }();
    return tables[static_cast<std::size_t>(kind)];
}

}  // namespace

struct Server::Impl final : Services {
    Impl(zmq::context_t& context, Options opts);
    ~Impl();

    void run();
    void serve_socket(zmq::socket_t& socket, char tag);
    zmq::socket_t& socket_of(const std::string& routing_id);
    bool adopt_tcp_sockets();
    std::string serve_tcp(const std::string& endpoint, const transport::TcpSecurity& security);
    void check_remote_clients(Clock::time_point now);
    Client* remote_client_for(std::uint64_t incarnation, pid_t pid);
    void handle(const std::string& routing_id, const Request& req);
    void hello(const std::string& routing_id, const Request& req);
    void status(const Caller& caller, const Request& req);
    void create(const Caller& caller, const Request& req);
    void dispatch(const Caller& caller, const Request& req, Object& obj);
    void expire(Clock::time_point now);
    void tick(Clock::time_point now);
    int poll_timeout_ms() const;
    void on_death(Client& client);
    bool is_dead(std::uint32_t index) const;
    void park_if_asked();
    Client* client_for(pid_t pid);

    // References.
    void references(const Caller& caller, const Request& req);
    void add_ref(Client& client, std::uint64_t object, std::int64_t n);
    void release_ref(std::uint64_t object, std::int64_t n);
    void drop_ref(Client& client, std::uint64_t object);
    void set_aside(Client& sender, std::uint64_t object, std::uint64_t token);
    void claim(Client& client, std::uint64_t object, std::uint64_t token);
    void release_hold(std::uint64_t token);
    void fork_hold(Client& parent, std::int64_t entry, std::uint64_t token);
    bool try_bind(Adoption& a, bool last_chance);
    void release_adoption(Adoption& a);
    void housekeeping(Clock::time_point now);
    Clock::time_point housekeeping_due() const;
    void free_doomed();

    // Services
    bool reply(const Caller& to, std::uint64_t rid, Status status, std::initializer_list<std::int64_t> values = {},
               std::string_view text = {}) override;
    using Services::reply;
    bool reply_with_batch(const Caller& to, std::uint64_t rid, std::initializer_list<std::int64_t> values,
                          std::string batch) override;
    WaiterId add_waiter(WaitQueue& queue, Waiter w) override;
    Waiter take_waiter(WaiterId id) override;
    Waiter& waiter(WaiterId id) override { return waiters.at(id); }
    void clear_deadline(WaiterId id) override;
    Arena* arena() override { return arena_.get(); }
    std::uint32_t allocate_slot() override { return arena_->allocate_slot(); }
    void release_slot(std::uint32_t index) override { arena_->release_slot(index); }
    void want_ticks(std::uint64_t object) override { ticking.insert(object); }
    void note_connection_state(const std::string& routing_id, std::uint64_t object) override;
    bool keep(std::uint64_t object) override;
    void release(std::uint64_t object) override { release_ref(object, 1); }
    void give_reference(const Caller& to, std::uint64_t object) override { add_ref(*to.client, object, 1); }

    bool send_reply(const std::string& routing_id, std::uint64_t rid, Status status,
                    std::initializer_list<std::int64_t> values, std::string_view text);
    /// Hands a message to ZeroMQ without waiting: false if its connection is gone or full.
    bool send_nowait(const std::string& routing_id, zmq::message_t& envelope, zmq::message_t* payload);
    void probe_connections(Client& client);
    void forget_connection(const std::string& routing_id);

    Options options;
    zmq::context_t& context;
    std::string name;
    std::shared_ptr<transport::Authenticator> zap;  // before the sockets it admits peers of
    zmq::socket_t router;
    std::vector<zmq::socket_t> tcp_sockets;  // tag i + 1
    std::mutex tcp_mutex;
    std::vector<zmq::socket_t> tcp_pending;  // bound by serve_tcp(), not polled yet
    std::size_t remote_clients = 0;
    Clock::time_point next_liveness{};
    WakeFd wake;
    std::atomic<bool> stopping{false};
    std::mutex park_mutex;
    std::condition_variable park_cv;
    bool park_requested = false;
    bool parked = false;
    bool finished = false;  // run() has returned
    pid_t self_pid;

    std::unique_ptr<Arena> arena_;  // the fast path's shared memory, if offered

    std::unordered_map<std::uint64_t, std::unique_ptr<Client>> clients;  // by key
    std::unordered_map<std::uint32_t, Client*> by_index;
    std::unordered_map<std::string, Peer> peers;  // by routing id
    std::vector<std::uint32_t> free_indices;
    std::uint32_t next_index = 1;
    bool clients_changed = true;

    std::unordered_map<std::uint64_t, Entry> objects;
    std::uint64_t next_object = 1;
    std::vector<std::uint64_t> doomed;  // objects whose last reference went: freed by free_doomed()

    std::unordered_map<std::uint64_t, Hold> holds;                      // by token
    std::deque<std::pair<Clock::time_point, std::uint64_t>> orphans;    // holds of dead senders, by expiry
    std::unordered_map<std::uint64_t, Clock::time_point> early_claims;  // by token
    std::deque<std::pair<Clock::time_point, std::uint64_t>> early_order;
    std::vector<Adoption> adoptions;

    std::unordered_map<WaiterId, Waiter> waiters;
    std::set<std::pair<Clock::time_point, WaiterId>> timers;
    WaiterId next_waiter = 1;

    std::set<std::uint64_t> ticking;  // objects that asked for on_tick()
    Clock::time_point next_tick{};

    std::uint64_t dropped = 0;  // messages that could not be read at all
    std::uint64_t errors = 0;   // requests answered with an error
    std::uint64_t unsent = 0;   // answers dropped: their connection was gone or full
    msgpack::sbuffer out{256};
};

namespace {
transport::SocketOptions router_options() {
    transport::SocketOptions so;
    so.max_message = kMaxBatchFrame;  // a queue batch; envelopes are checked against kMaxFrame
    so.router_mandatory = true;       // a reply to a peer that is gone fails at once instead of queueing
    so.send_hwm = kSendHwm;
    so.recv_hwm = kRecvHwm;
    return so;
}

std::string random_name() {
    std::uint64_t r = 0;
    while (::getrandom(&r, sizeof r, 0) != sizeof r) {
        if (errno != EINTR) throw_os_error("getrandom", errno);
    }
    char text[32];
    std::snprintf(text, sizeof text, "zmp-broker:%016llx", static_cast<unsigned long long>(r));
    return text;
}
}  // namespace

Server::Impl::Impl(zmq::context_t& owner_context, Options opts)
    : options(std::move(opts)), context(owner_context), self_pid(this_process().pid()) {
    name = !options.name.empty() ? options.name : !options.endpoint.empty() ? options.endpoint : random_name();
    router = transport::open_socket(context, zmq::socket_type::router, router_options());
    try {
        if (!options.endpoint.empty()) router.bind(options.endpoint);
        if (!options.inproc_endpoint.empty()) router.bind(options.inproc_endpoint);
    } catch (const zmq::error_t& e) {
        throw_os_error("broker cannot bind " + options.endpoint, e.num());
    }
    if (options.shared_memory) arena_ = std::make_unique<Arena>(Arena::make_prefix(), Arena::Role::owner);
}

Server::Impl::~Impl() {
    for (auto& [pid, client] : clients)
        if (client->pidfd >= 0) ::close(client->pidfd);
    router.close();
    for (zmq::socket_t& s : tcp_sockets) s.close();
    for (zmq::socket_t& s : tcp_pending) s.close();
    const std::string ipc = "ipc://";
    if (options.endpoint.rfind(ipc, 0) == 0) ::unlink(options.endpoint.c_str() + ipc.size());
}

// ---- replies -----------------------------------------------------------------------------------

bool Server::Impl::send_nowait(const std::string& routing_id, zmq::message_t& envelope, zmq::message_t* payload) {
    // Never blocks: the first frame picks the connection, and fails (EHOSTUNREACH: gone; EAGAIN:
    // full) before anything is queued; once it is taken, the rest is too.
    zmq::socket_t& socket = socket_of(routing_id);
    for (;;) {
        if (zmq_send(socket.handle(), routing_id.data() + 1, routing_id.size() - 1, ZMQ_SNDMORE | ZMQ_DONTWAIT) >= 0)
            break;
        if (zmq_errno() == EINTR) continue;
        ++unsent;
        return false;
    }
    const auto send_frame = [&](zmq::message_t& frame, int flags) {
        while (zmq_msg_send(frame.handle(), socket.handle(), flags) < 0) {
            if (zmq_errno() != EINTR) throw_os_error("broker: zmq_send", zmq_errno());
        }
    };
    send_frame(envelope, payload != nullptr ? ZMQ_SNDMORE : 0);
    if (payload != nullptr) send_frame(*payload, 0);
    return true;
}

bool Server::Impl::send_reply(const std::string& routing_id, std::uint64_t rid, Status status,
                              std::initializer_list<std::int64_t> values, std::string_view text) {
    out.clear();
    encode_reply(out, rid, status, values, text);
    zmq::message_t envelope(out.data(), out.size());
    return send_nowait(routing_id, envelope, nullptr);
}

bool Server::Impl::reply(const Caller& to, std::uint64_t rid, Status status, std::initializer_list<std::int64_t> values,
                         std::string_view text) {
    return send_reply(to.routing_id, rid, status, values, text);
}

bool Server::Impl::reply_with_batch(const Caller& to, std::uint64_t rid, std::initializer_list<std::int64_t> values,
                                    std::string batch) {
    out.clear();
    encode_reply(out, rid, Status::ok, values);
    zmq::message_t envelope(out.data(), out.size());
    zmq::message_t payload = transport::owned_frame(std::move(batch));
    return send_nowait(to.routing_id, envelope, &payload);
}

// ---- the loop -------------------------------------------------------------------------------

int Server::Impl::poll_timeout_ms() const {
    Clock::time_point due = housekeeping_due();
    if (!timers.empty()) due = std::min(due, timers.begin()->first);
    if (!ticking.empty()) due = std::min(due, next_tick);
    if (remote_clients > 0) due = std::min(due, next_liveness);
    if (due == kNever) return -1;
    auto left = std::chrono::duration_cast<std::chrono::microseconds>(due - Clock::now()).count();
    if (left <= 0) return 0;
    return static_cast<int>(std::min<long long>((left + 999) / 1000, INT_MAX));
}

void Server::Impl::park_if_asked() {
    std::unique_lock lock(park_mutex);
    if (!park_requested) return;
    parked = true;
    park_cv.notify_all();
    park_cv.wait(lock, [&] { return !park_requested; });
    parked = false;
}

void Server::Impl::run() {
    // This thread holds the broker's life while it serves: if it dies (its process is killed),
    // every process sleeping on the arena is woken and told (Arena::sleep).
    if (arena_) arena_->hold_life();
    struct Finished {
        Impl& impl;
        ~Finished() {
            if (impl.arena_) impl.arena_->release_life();
            std::lock_guard lock(impl.park_mutex);
            impl.finished = true;
            impl.park_cv.notify_all();
        }
    } finished_on_return{*this};
    std::vector<zmq_pollitem_t> items;
    std::vector<Client*> watched;  // watched[i] belongs to items[i + first_pidfd]
    std::size_t first_pidfd = 2;
    while (!stopping.load(std::memory_order_acquire)) {
        park_if_asked();
        if (adopt_tcp_sockets()) clients_changed = true;
        if (clients_changed) {
            items.assign({{router.handle(), 0, ZMQ_POLLIN, 0}, {nullptr, wake.fd(), ZMQ_POLLIN, 0}});
            for (zmq::socket_t& s : tcp_sockets) items.push_back({s.handle(), 0, ZMQ_POLLIN, 0});
            first_pidfd = items.size();
            watched.clear();
            for (auto& [pid, client] : clients) {
                if (client->pidfd < 0) continue;
                items.push_back({nullptr, client->pidfd, ZMQ_POLLIN, 0});
                watched.push_back(client.get());
            }
            clients_changed = false;
        }
        const int rc = zmq_poll(items.data(), static_cast<int>(items.size()), poll_timeout_ms());
        if (rc < 0) {
            if (zmq_errno() == EINTR) continue;
            if (zmq_errno() == ETERM) return;
            throw_os_error("broker: zmq_poll", zmq_errno());
        }
        if (items[1].revents != 0) wake.drain();
        // Deaths first: a dead process's queued requests are then refused (its connections are
        // forgotten), and a recycled pid is never mistaken for the dead process.
        std::vector<Client*> dead;
        for (std::size_t i = 0; i < watched.size(); ++i)
            if (items[i + first_pidfd].revents != 0) dead.push_back(watched[i]);
        for (Client* client : dead) on_death(*client);
        if (items[0].revents != 0) serve_socket(router, kMainSocket);
        for (std::size_t i = 0; i < tcp_sockets.size(); ++i)
            if (items[i + 2].revents != 0) serve_socket(tcp_sockets[i], static_cast<char>(i + 1));
        const auto now = Clock::now();
        if (remote_clients > 0 && now >= next_liveness) check_remote_clients(now);
        expire(now);
        if (!ticking.empty() && now >= next_tick) tick(now);
        if (housekeeping_due() <= now) housekeeping(now);
    }
}

void Server::Impl::serve_socket(zmq::socket_t& socket, char tag) {
    std::vector<zmq::message_t> frames;
    // Bounded, so that deadlines and deaths are looked at between bursts.
    for (int n = 0; n < 4096; ++n) {
        try {
            if (!transport::recv_message(socket, frames, 3, std::chrono::milliseconds(0))) return;
        } catch (const ProtocolError&) {
            ++dropped;  // more frames than an envelope has
            continue;
        }
        if (frames.size() < 2 || frames[1].size() > static_cast<std::size_t>(kMaxFrame)) {
            ++dropped;
            continue;
        }
        std::string routing_id(1, tag);
        routing_id.append(frames[0].data<char>(), frames[0].size());
        std::uint64_t rid = 0;
        Request req;
        std::string_view payload;
        try {
            req = decode_request(frames[1].data(), frames[1].size(), &rid);
            if (frames.size() == 3) {
                if (req.op != Op::queue_put && req.op != Op::manager_call && req.op != Op::hello)
                    throw ProtocolError(std::string(op_name(req.op)) + " takes no second frame");
                payload = std::string_view(frames[2].data<char>(), frames[2].size());
                req.payload = &payload;
            }
        } catch (const ProtocolError& e) {
            if (rid == 0) {
                ++dropped;
                continue;
            }
            ++errors;
            (void)send_reply(routing_id, rid, Status::protocol_error, {}, e.what());
            continue;
        }
        try {
            handle(routing_id, req);
        } catch (const Refused& r) {
            ++errors;
            (void)send_reply(routing_id, req.rid, r.status, {}, r.text);
        }
        free_doomed();
    }
}

void Server::Impl::handle(const std::string& routing_id, const Request& req) {
    if (req.op == Op::hello) {
        try {
            return hello(routing_id, req);
        } catch (const Refused& r) {
            log_hello_refused(req.nargs > 0 ? req.args[0] : 0, r.text);
            throw;
        }
    }
    auto peer = peers.find(routing_id);
    // A status request reads and changes nothing: zmp-status asks without becoming a client (and
    // over tcp the socket has admitted only holders of the authkey already).
    if (peer == peers.end() && req.op == Op::status) return status(Caller{routing_id, nullptr, 0}, req);
    if (peer == peers.end()) refuse(Status::protocol_error, "the first message on a connection must be HELLO");
    const Caller caller{routing_id, peer->second.client, peer->second.tid};
    switch (req.op) {
        case Op::create:
            return create(caller, req);
        case Op::keep_holdings:
            for (auto& [id, entry] : objects) entry.object->on_client_exit(*this, *caller.client);
            (void)reply(caller, req.rid, Status::ok);
            return;
        case Op::stats:
            (void)reply(caller, req.rid, Status::ok,
                        {static_cast<std::int64_t>(dropped), static_cast<std::int64_t>(errors),
                         static_cast<std::int64_t>(clients.size()), static_cast<std::int64_t>(objects.size()),
                         static_cast<std::int64_t>(peers.size()), static_cast<std::int64_t>(waiters.size()),
                         static_cast<std::int64_t>(holds.size()), arena_ ? arena_->slots_in_use() : 0,
                         static_cast<std::int64_t>(unsent)});
            return;
        case Op::status:
            return status(caller, req);
        case Op::ref_drop:
        case Op::ref_hold:
        case Op::ref_claim:
        case Op::fork_hold:
        case Op::ref_sync:
            return references(caller, req);
        default:
            break;
    }
    auto it = objects.find(req.object);
    if (it == objects.end()) refuse(Status::protocol_error, "unknown object " + std::to_string(req.object));
    dispatch(caller, req, *it->second.object);
}

void Server::Impl::dispatch(const Caller& caller, const Request& req, Object& obj) {
    if (obj.slot() >= 0) refuse(Status::protocol_error, "this object's state is in shared memory: operate on it there");
    if (caller.client->waiting >= kMaxWaits)
        refuse(Status::protocol_error, "too many requests of this process are waiting already");
    const OpHandler handler = kind_table(obj.kind()).ops[static_cast<std::size_t>(req.op)];
    if (handler == nullptr)
        refuse(Status::protocol_error, std::string(op_name(req.op)) + " does not apply to this object");
    handler(obj, *this, caller, req);
}

void Server::Impl::create(const Caller& caller, const Request& req) {
    const std::int64_t kind = arg(req, 0);
    const KindEntry* entry = kind >= 1 && kind <= kLastKind ? kind_table(static_cast<Kind>(kind)).entry : nullptr;
    if (entry == nullptr) refuse(Status::protocol_error, "create: unknown kind");
    CreateArgs args;
    args.kind = static_cast<Kind>(kind);
    args.value = arg(req, 1);
    args.timeout_ns = arg(req, 2);
    args.shared = arena_ && arg(req, 3) != 0 && entry->fast_path;
    args.has_action = arg(req, 4) != 0;
    const std::uint64_t id = next_object;
    std::unique_ptr<Object> obj = entry->make(*this, id, args);
    ++next_object;
    const std::int64_t slot = obj->slot();
    objects.emplace(id, Entry{std::move(obj), 0, 0});
    add_ref(*caller.client, id, 1);  // the creator's
    (void)reply(caller, req.rid, Status::ok, {static_cast<std::int64_t>(id), slot});
}

// ---- references ----------------------------------------------------------------------------

void Server::Impl::references(const Caller& caller, const Request& req) {
    Client& client = *caller.client;
    switch (req.op) {
        case Op::ref_drop:
            return drop_ref(client, req.object);
        case Op::ref_hold:
            return set_aside(client, req.object, static_cast<std::uint64_t>(arg(req, 0)));
        case Op::ref_claim:
            return claim(client, req.object, static_cast<std::uint64_t>(arg(req, 0)));
        case Op::fork_hold:
            return fork_hold(client, arg(req, 0), static_cast<std::uint64_t>(arg(req, 1)));
        default:
            (void)reply(caller, req.rid, Status::ok);  // ref_sync: everything before it is done
            return;
    }
}

void Server::Impl::add_ref(Client& client, std::uint64_t object, std::int64_t n) {
    client.refs[object] += n;
    objects.at(object).refs += n;
}

void Server::Impl::release_ref(std::uint64_t object, std::int64_t n) {
    auto it = objects.find(object);
    if (it == objects.end()) return;
    it->second.refs -= n;
    if (it->second.refs <= 0) doomed.push_back(object);
}

void Server::Impl::drop_ref(Client& client, std::uint64_t object) {
    auto it = client.refs.find(object);
    if (it == client.refs.end()) return;  // it holds none (a forked child whose references were lost)
    if (--it->second <= 0) client.refs.erase(it);
    release_ref(object, 1);
}

void Server::Impl::set_aside(Client& sender, std::uint64_t object, std::uint64_t token) {
    if (token == 0 || !objects.contains(object) || holds.contains(token)) return;
    if (early_claims.erase(token) != 0) return;  // its receiver already took a reference of its own
    objects.at(object).refs += 1;
    holds.emplace(token, Hold{object, &sender});
    sender.holds.push_back(token);
    ++sender.holds_out;
    // A sender with too many out gives up its oldest; the list forgets claimed ones now and then.
    while (sender.holds_out > kMaxHolds && !sender.holds.empty()) {
        const std::uint64_t oldest = sender.holds.front();
        sender.holds.pop_front();
        if (auto h = holds.find(oldest); h != holds.end() && h->second.sender == &sender) release_hold(oldest);
    }
    if (sender.holds.size() > 2 * sender.holds_out + 1024) {
        std::erase_if(sender.holds, [&](std::uint64_t t) {
            auto h = holds.find(t);
            return h == holds.end() || h->second.sender != &sender;
        });
    }
}

void Server::Impl::claim(Client& client, std::uint64_t object, std::uint64_t token) {
    if (!objects.contains(object)) return;  // gone: the claimant's handle names nothing
    add_ref(client, object, 1);
    if (token == 0) return;
    if (auto h = holds.find(token); h != holds.end() && h->second.object == object) return release_hold(token);
    // The hold has not arrived yet (or was claimed already): take it at once when it comes.
    if (early_claims.size() >= kMaxEarlyClaims && !early_order.empty()) {
        early_claims.erase(early_order.front().second);
        early_order.pop_front();
    }
    const auto expires = Clock::now() + kEarlyClaimLife;
    early_claims[token] = expires;
    early_order.emplace_back(expires, token);
}

void Server::Impl::release_hold(std::uint64_t token) {
    auto h = holds.find(token);
    if (h == holds.end()) return;
    if (h->second.sender != nullptr) --h->second.sender->holds_out;
    const std::uint64_t object = h->second.object;
    holds.erase(h);
    release_ref(object, 1);
}

void Server::Impl::fork_hold(Client& parent, std::int64_t entry, std::uint64_t token) {
    if (!arena_ || entry < 0 || entry >= static_cast<std::int64_t>(kForkEntries) || token == 0) return;
    // As many forks at once as a process has entries for (a client that says more is lying).
    if (std::count_if(adoptions.begin(), adoptions.end(), [&](const Adoption& a) { return a.parent == &parent; }) >=
        static_cast<std::ptrdiff_t>(kForkEntries))
        return;
    Adoption a{&parent, static_cast<std::uint32_t>(entry), token, {}, Clock::now()};
    a.refs.reserve(parent.refs.size());
    for (const auto& [object, n] : parent.refs) {
        objects.at(object).refs += n;
        a.refs.emplace_back(object, n);
    }
    if (!try_bind(a, false)) adoptions.push_back(std::move(a));
}

// Gives the child of an adoption the references kept for it, once it has written its pid; true
// when the adoption is settled (bound, or given up: `last_chance`, or too old).
bool Server::Impl::try_bind(Adoption& a, bool last_chance) {
    ForkEntry& e = arena_->client(a.parent->index).forks[a.entry];
    const bool ours = e.token.load(std::memory_order_acquire) == a.token;
    const auto pid = ours ? static_cast<pid_t>(e.child.load(std::memory_order_acquire)) : 0;
    if (pid == 0 && ours && !last_chance && Clock::now() - a.since < kForkBindLimit) return false;
    if (ours) {
        e.child.store(0, std::memory_order_relaxed);
        e.token.store(0, std::memory_order_release);
    }
    Client* child = pid > 0 ? client_for(pid) : nullptr;
    if (child == nullptr) {
        release_adoption(a);
        return true;
    }
    for (const auto& [object, n] : a.refs) child->refs[object] += n;  // counted on the objects already
    a.refs.clear();
    return true;
}

void Server::Impl::release_adoption(Adoption& a) {
    for (const auto& [object, n] : a.refs) release_ref(object, n);
    a.refs.clear();
}

Clock::time_point Server::Impl::housekeeping_due() const {
    if (!adoptions.empty()) return Clock::now() + kForkRetry;
    Clock::time_point due = kNever;
    if (!orphans.empty()) due = std::min(due, orphans.front().first);
    if (!early_order.empty()) due = std::min(due, early_order.front().first);
    return due;
}

void Server::Impl::housekeeping(Clock::time_point now) {
    while (!orphans.empty() && orphans.front().first <= now) {
        const std::uint64_t token = orphans.front().second;
        orphans.pop_front();
        if (auto h = holds.find(token); h != holds.end() && h->second.sender == nullptr) release_hold(token);
    }
    while (!early_order.empty() && early_order.front().first <= now) {
        auto it = early_claims.find(early_order.front().second);
        if (it != early_claims.end() && it->second == early_order.front().first) early_claims.erase(it);
        early_order.pop_front();
    }
    std::erase_if(adoptions, [&](Adoption& a) { return try_bind(a, false); });
    free_doomed();
}

void Server::Impl::free_doomed() {
    while (!doomed.empty()) {
        const std::uint64_t id = doomed.back();
        doomed.pop_back();
        auto it = objects.find(id);
        if (it == objects.end() || it->second.refs > 0) continue;  // claimed again meanwhile
        it->second.object->on_destroy(*this);
        if (it->second.waiters > 0) {
            // Only a client that dropped every handle yet waits (a hostile one) can have any.
            std::vector<WaiterId> left;
            for (const auto& [wid, w] : waiters)
                if (w.object == id) left.push_back(wid);
            for (WaiterId wid : left)
                (void)reply(take_waiter(wid), Status::protocol_error, {}, "the object no longer exists");
        }
        objects.erase(id);
    }
}

// ---- waiters and deadlines -----------------------------------------------------------------

WaiterId Server::Impl::add_waiter(WaitQueue& queue, Waiter w) {
    const WaiterId id = next_waiter++;
    ++objects.at(w.object).waiters;
    ++w.caller.client->waiting;
    if (w.deadline != kNever) timers.emplace(w.deadline, id);
    waiters.emplace(id, std::move(w));
    queue.push_back(id);
    return id;
}

Waiter Server::Impl::take_waiter(WaiterId id) {
    auto it = waiters.find(id);
    Waiter w = std::move(it->second);
    waiters.erase(it);
    if (w.deadline != kNever) timers.erase({w.deadline, id});
    if (auto obj = objects.find(w.object); obj != objects.end()) --obj->second.waiters;
    --w.caller.client->waiting;
    return w;
}

void Server::Impl::clear_deadline(WaiterId id) {
    Waiter& w = waiters.at(id);
    timers.erase({w.deadline, id});
    w.deadline = kNever;
}

void Server::Impl::expire(Clock::time_point now) {
    while (!timers.empty() && timers.begin()->first <= now) {
        const WaiterId id = timers.begin()->second;
        objects.at(waiters.at(id).object).object->on_timeout(*this, id);
    }
}

void Server::Impl::tick(Clock::time_point now) {
    next_tick = now + kTickInterval;
    for (auto it = ticking.begin(); it != ticking.end();) {
        auto found = objects.find(*it);
        if (found == objects.end() || !found->second.object->on_tick(*this, now)) {
            it = ticking.erase(it);
        } else {
            ++it;
        }
    }
}

bool Server::Impl::keep(std::uint64_t object) {
    auto it = objects.find(object);
    if (it == objects.end()) return false;
    ++it->second.refs;
    return true;
}

void Server::Impl::note_connection_state(const std::string& routing_id, std::uint64_t object) {
    auto it = peers.find(routing_id);
    if (it == peers.end()) return;
    auto& objects_of_peer = it->second.objects;
    if (std::find(objects_of_peer.begin(), objects_of_peer.end(), object) != objects_of_peer.end()) return;
    // Objects freed since are forgotten now and then (a connection may use many queues in turn).
    if (objects_of_peer.size() >= 64 && (objects_of_peer.size() & (objects_of_peer.size() - 1)) == 0)
        std::erase_if(objects_of_peer, [&](std::uint64_t id) { return !objects.contains(id); });
    objects_of_peer.push_back(object);
}

// ---- clients ---------------------------------------------------------------------------------

void Server::Impl::hello(const std::string& routing_id, const Request& req) {
    const std::int64_t pid = arg(req, 0);
    const std::int64_t tid = arg(req, 1);
    if (pid <= 0 || pid > INT_MAX || tid < 0 || tid > UINT32_MAX)
        refuse(Status::protocol_error, "hello: bad pid or tid");
    const bool remote = routing_id[0] != kMainSocket;
    Client* client = nullptr;
    if (remote) {
        // Another host's pid means nothing here: a remote process names itself by a random
        // incarnation number (new in each process and after each fork).
        const std::int64_t incarnation = arg(req, 2);
        if (incarnation <= 0) refuse(Status::protocol_error, "hello over tcp: bad incarnation");
        const std::uint64_t key = kRemoteKey | static_cast<std::uint64_t>(incarnation);
        if (clients.size() >= kMaxClients && !clients.contains(key))
            refuse(Status::protocol_error, "too many client processes");
        client = remote_client_for(key, static_cast<pid_t>(pid));
    } else {
        if (auto it = clients.find(static_cast<std::uint64_t>(pid)); it != clients.end() && it->second->pidfd >= 0) {
            // The process of that pid died and the pid is used again: the old one's death comes first.
            pollfd p{it->second->pidfd, POLLIN, 0};
            if (::poll(&p, 1, 0) > 0) on_death(*it->second);
        }
        if (clients.size() >= kMaxClients && !clients.contains(static_cast<std::uint64_t>(pid)))
            refuse(Status::protocol_error, "too many client processes");
        client = client_for(static_cast<pid_t>(pid));
    }
    if (client == nullptr) refuse(Status::protocol_error, "hello: process " + std::to_string(pid) + " is not running");
    if (!peers.contains(routing_id) && client->peers.size() >= client->probe_at) {
        probe_connections(*client);
        if (client->peers.size() >= kMaxConnections)
            refuse(Status::protocol_error, "too many connections from process " + std::to_string(pid));
    }
    auto known = peers.find(routing_id);
    if (known != peers.end() && known->second.client != client) std::erase(known->second.client->peers, routing_id);
    if (known == peers.end() || known->second.client != client) client->peers.push_back(routing_id);
    Peer& peer = peers[routing_id];
    peer.client = client;
    peer.tid = static_cast<std::uint32_t>(tid);
    if (req.payload != nullptr) read_hello_identity(*req.payload, *client);
    // A local client learns the arena (if any); a remote one the name handles of this broker carry.
    (void)send_reply(routing_id, req.rid, Status::ok, {client->index, self_pid},
                     remote   ? name
                     : arena_ ? arena_->prefix()
                              : std::string());
}

// zmp-status's request: a picture of the clients and objects (broker/status.hpp).
void Server::Impl::status(const Caller& caller, const Request& req) {
    BrokerStatus st;
    st.pid = self_pid;
    st.host = this_host_name();
    st.endpoint = options.endpoint;
    for (const auto& [key, client] : clients) {
        std::int64_t references = 0;
        for (const auto& [object, n] : client->refs) references += n;
        // A client that joined over tcp names its host in its HELLO; one that did not is shown as remote.
        std::string host =
            client->remote ? (client->host.empty() ? std::string("(remote, over tcp)") : client->host) : st.host;
        st.clients.push_back(ClientStatus{client->pid, client->name, std::move(host),
                                          static_cast<std::int64_t>(client->peers.size()), client->waiting,
                                          references});
    }
    for (const auto& [id, entry] : objects) {
        const Object& obj = *entry.object;
        ObjectStatus o{obj.kind(), id, entry.refs, obj.slot() >= 0, {}};
        if (obj.slot() >= 0 && arena_) {
            const std::uint32_t holder =
                describe_slot(arena_->slot(static_cast<std::uint32_t>(obj.slot())), obj.kind(), o.fields);
            if (obj.kind() == Kind::lock || obj.kind() == Kind::rlock) {
                const auto who = by_index.find(holder);
                o.fields.emplace_back("holder_pid", holder != 0 && who != by_index.end() ? who->second->pid : 0);
                if (holder == kDiedOwner) o.fields.emplace_back("owner_died", 1);
            }
        } else {
            obj.describe(*this, o.fields);
        }
        st.objects.push_back(std::move(o));
    }
    std::sort(st.objects.begin(), st.objects.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
    std::sort(st.clients.begin(), st.clients.end(), [](const auto& a, const auto& b) { return a.pid < b.pid; });
    (void)reply_with_batch(caller, req.rid,
                           {static_cast<std::int64_t>(st.objects.size()), static_cast<std::int64_t>(st.clients.size())},
                           pack_broker_status(st));
}

// Each connection of `client` is sent an answer to no request (request id 0, which clients drop):
// those whose socket is closed are forgotten, with what they had (a queue delivery goes back).
void Server::Impl::probe_connections(Client& client) {
    out.clear();
    encode_reply(out, 0, Status::ok, {});
    const std::vector<std::string> routing_ids = client.peers;
    for (const std::string& routing_id : routing_ids) {
        zmq::message_t probe(out.data(), out.size());
        if (send_nowait(routing_id, probe, nullptr)) continue;
        if (zmq_errno() == EHOSTUNREACH) forget_connection(routing_id);
    }
    client.probe_at = std::max(kProbeFirst, 2 * client.peers.size());
}

void Server::Impl::forget_connection(const std::string& routing_id) {
    auto peer = peers.find(routing_id);
    if (peer == peers.end()) return;
    Client& client = *peer->second.client;
    const std::vector<std::uint64_t> with_state = std::move(peer->second.objects);
    peers.erase(peer);
    std::erase(client.peers, routing_id);
    for (std::uint64_t id : with_state)
        if (auto obj = objects.find(id); obj != objects.end())
            obj->second.object->on_connection_gone(*this, routing_id);
}

// The client record of process `pid`, made (and its death watched) if there is none yet; nullptr if
// that process is not running.
Client* Server::Impl::client_for(pid_t pid) {
    const auto key = static_cast<std::uint64_t>(pid);
    if (auto it = clients.find(key); it != clients.end()) return it->second.get();
    if (clients.size() >= kMaxClients) return nullptr;
    auto client = std::make_unique<Client>();
    client->pid = pid;
    client->key = key;
    if (pid != self_pid) {
        client->pidfd = open_pidfd(pid);
        if (client->pidfd < 0) return nullptr;
    }
    if (!free_indices.empty()) {
        client->index = free_indices.back();
        free_indices.pop_back();
    } else {
        client->index = next_index++;
    }
    if (arena_) std::memset(static_cast<void*>(&arena_->client(client->index)), 0, sizeof(ClientRecord));
    by_index[client->index] = client.get();
    clients_changed = true;
    return clients.emplace(key, std::move(client)).first->second.get();
}

// The record of the remote client `key`, made if there is none yet. Its liveness is probed from
// now on (check_remote_clients).
Client* Server::Impl::remote_client_for(std::uint64_t key, pid_t pid) {
    if (auto it = clients.find(key); it != clients.end()) return it->second.get();
    if (clients.size() >= kMaxClients) return nullptr;
    auto client = std::make_unique<Client>();
    client->pid = pid;
    client->key = key;
    client->remote = true;
    if (!free_indices.empty()) {
        client->index = free_indices.back();
        free_indices.pop_back();
    } else {
        client->index = next_index++;
    }
    by_index[client->index] = client.get();
    if (remote_clients++ == 0) next_liveness = Clock::now() + kLivenessProbe;
    return clients.emplace(key, std::move(client)).first->second.get();
}

// Every remote client's connections are probed with an answer to no request (clients drop those):
// one that ZeroMQ has closed (its peer hung up, or its heartbeats went unanswered: the host is
// gone or cut off) is forgotten, and a client with no connection left has died.
void Server::Impl::check_remote_clients(Clock::time_point now) {
    next_liveness = now + kLivenessProbe;
    msgpack::sbuffer probe_bytes(32);  // not `out`: forgetting a connection may send replies
    encode_reply(probe_bytes, 0, Status::ok, {});
    std::vector<Client*> dead;
    for (auto& [key, client] : clients) {
        if (!client->remote) continue;
        const std::vector<std::string> routing_ids = client->peers;
        for (const std::string& routing_id : routing_ids) {
            zmq::socket_t& socket = socket_of(routing_id);
            int rc;
            do {
                rc =
                    zmq_send(socket.handle(), routing_id.data() + 1, routing_id.size() - 1, ZMQ_SNDMORE | ZMQ_DONTWAIT);
            } while (rc < 0 && zmq_errno() == EINTR);
            if (rc >= 0) {
                zmq::message_t probe(probe_bytes.data(), probe_bytes.size());
                while (zmq_msg_send(probe.handle(), socket.handle(), 0) < 0 && zmq_errno() == EINTR) {
                }
            } else if (zmq_errno() == EHOSTUNREACH) {
                forget_connection(routing_id);
            }
            // EAGAIN: a live connection whose client is not reading; it is there.
        }
        if (client->peers.empty()) dead.push_back(client.get());
    }
    for (Client* client : dead) on_death(*client);
}

zmq::socket_t& Server::Impl::socket_of(const std::string& routing_id) {
    const auto tag = static_cast<unsigned char>(routing_id[0]);
    return tag == kMainSocket ? router : tcp_sockets[tag - 1];
}

std::string Server::Impl::serve_tcp(const std::string& endpoint, const transport::TcpSecurity& security) {
    if (endpoint.rfind("tcp://", 0) != 0) throw ValueError("serve_tcp: " + endpoint + " is not a tcp:// endpoint");
    if (arena_) throw ValueError("a broker whose objects keep their state in shared memory cannot serve other hosts");
    transport::SocketOptions so = router_options();
    so.heartbeat_ivl_ms = static_cast<int>(kHeartbeatIvl.count());
    so.heartbeat_timeout_ms = static_cast<int>(kHeartbeatTimeout.count());
    zmq::socket_t socket = transport::open_socket(context, zmq::socket_type::router, so);
    std::lock_guard lock(tcp_mutex);
    if (tcp_sockets.size() + tcp_pending.size() >= 254) throw ValueError("serve_tcp: too many tcp endpoints");
    if (!zap) {
        zap = transport::Authenticator::of(context);
        // Through zmp's logging, as every refused peer (on stderr when the program sets up nothing).
        zap->set_refusal_handler(
            [](const transport::Refusal& refusal) { log_peer_refused(transport::describe(refusal)); });
    }
    transport::apply_server_security(socket, security, *zap);
    try {
        socket.bind(endpoint);
    } catch (const zmq::error_t& e) {
        throw_os_error("broker cannot bind " + endpoint, e.num());
    }
    std::string bound = socket.get(zmq::sockopt::last_endpoint);
    tcp_pending.push_back(std::move(socket));
    wake.notify();
    return bound;
}

// The loop's thread takes over the sockets serve_tcp() bound (a socket may change threads between
// two uses: the mutex orders them).
bool Server::Impl::adopt_tcp_sockets() {
    std::lock_guard lock(tcp_mutex);
    if (tcp_pending.empty()) return false;
    for (zmq::socket_t& s : tcp_pending) tcp_sockets.push_back(std::move(s));
    tcp_pending.clear();
    return true;
}

void Server::Impl::on_death(Client& client) {
    // Its waits are dropped (each kind forgets them)...
    std::vector<WaiterId> mine;
    for (const auto& [id, w] : waiters)
        if (w.caller.client == &client) mine.push_back(id);
    for (WaiterId id : mine) {
        objects.at(waiters.at(id).object).object->drop_waiter(*this, id);
        (void)take_waiter(id);
    }
    // ... what its connections had is given back ...
    for (const std::string& routing_id : client.peers) {
        auto peer = peers.find(routing_id);
        if (peer == peers.end()) continue;
        for (std::uint64_t id : peer->second.objects)
            if (auto obj = objects.find(id); obj != objects.end())
                obj->second.object->on_connection_gone(*this, routing_id);
        peers.erase(peer);
    }
    // ... and what it held is freed (locks, semaphore units, a barrier it was in).
    for (auto& [id, entry] : objects) entry.object->on_client_death(*this, client);
    if (arena_ && !client.remote) {
        for (std::uint64_t id : repair_client(*arena_, client.index, [this](std::uint32_t i) { return is_dead(i); }))
            if (auto obj = objects.find(id); obj != objects.end())
                log_lock_freed(obj->second.object->kind(), id, client.pid);
    }
    // Its references go; those it set aside in messages stay a while for their receivers; the
    // children it was forking get theirs now, if they are known.
    for (const auto& [object, n] : client.refs) release_ref(object, n);
    client.refs.clear();
    const auto now = Clock::now();
    for (std::uint64_t token : client.holds) {
        auto h = holds.find(token);
        if (h == holds.end() || h->second.sender != &client) continue;
        h->second.sender = nullptr;
        orphans.emplace_back(now + kHoldGrace, token);
    }
    std::erase_if(adoptions, [&](Adoption& a) { return a.parent == &client && try_bind(a, true); });
    if (client.pidfd >= 0) ::close(client.pidfd);
    if (client.remote) --remote_clients;
    by_index.erase(client.index);
    free_indices.push_back(client.index);
    clients.erase(client.key);
    clients_changed = true;
    free_doomed();
}

bool Server::Impl::is_dead(std::uint32_t index) const {
    auto it = by_index.find(index);
    if (it == by_index.end()) return true;
    if (it->second->pidfd < 0) return false;
    pollfd p{it->second->pidfd, POLLIN, 0};
    return ::poll(&p, 1, 0) > 0;
}

pid_t client_pid(const Client& client) { return client.pid; }

// ---- Server --------------------------------------------------------------------------------------

Server::Server(zmq::context_t& context, Options options) : impl_(std::make_unique<Impl>(context, std::move(options))) {}
Server::~Server() = default;

void Server::run() { impl_->run(); }

void Server::stop() noexcept {
    impl_->stopping.store(true, std::memory_order_release);
    impl_->wake.notify();
}

const std::string& Server::endpoint() const { return impl_->options.endpoint; }

const std::string& Server::name() const { return impl_->name; }

std::string Server::serve_tcp(const std::string& endpoint, const transport::TcpSecurity& security) {
    return impl_->serve_tcp(endpoint, security);
}

void Server::pause() {
    {
        std::lock_guard lock(impl_->park_mutex);
        impl_->park_requested = true;
    }
    impl_->wake.notify();
    std::unique_lock lock(impl_->park_mutex);
    // A thread that has not reached run() yet is waited for too: it may be allocating.
    impl_->park_cv.wait(lock, [&] { return impl_->parked || impl_->finished; });
}

void Server::resume() {
    {
        std::lock_guard lock(impl_->park_mutex);
        impl_->park_requested = false;
    }
    impl_->park_cv.notify_all();
}

}  // namespace zmp::detail::broker
