#pragma once
// A process's link to one broker: the client half of protocol.hpp.
//
// Each thread talks to the broker over its own DEALER (runtime/zmq_context.hpp: thread_socket), which says HELLO
// (pid, tid) when it is made; every object of that broker is multiplexed over it. A blocking
// request waits for its reply and, at the same time, for the broker's death (a pidfd on the
// broker process, for a broker on this host): nothing hangs if the broker goes away. After fork()
// the child makes fresh connections and says HELLO again under its own pid.
//
// Reference traffic (handle.hpp: a handle dropped, sent, received; a fork) goes through one more
// DEALER per process and link, the reference channel, so that it reaches the broker in the order
// it was sent whatever thread sent it.
//
// Links are never destroyed (handles may be used by static destructors); one per endpoint.
//
// A link to a tcp:// endpoint is remote (a broker on another host, or served over tcp): its
// connections use CURVE keys derived from the authkey (transport/security.hpp; the link's own key
// if it was joined with one, the run's otherwise), a refused key raising AuthenticationError at
// once; HELLO carries a random incarnation number instead of relying on the pid; there is no
// arena, so every call takes the socket path. The broker's HELLO answer names the broker as its
// handles name it, and the link answers to that name too: a handle received from another process
// of that broker resolves to this link.

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <zmq.hpp>

#include "base/futex.hpp"
#include "broker/protocol.hpp"

#include "zmp/errors.hpp"
#include "zmp/timeout.hpp"
#include "zmp/transport/security.hpp"

namespace zmp::detail::broker {

class Arena;
struct ForkEntry;

/// One thread's connection to one broker.
struct LinkConn {
    zmq::socket_ref socket;
    // A remote link's connection owns its socket, and watches it: a connection ZeroMQ closes (the
    // broker stopped, or its heartbeats went unanswered: its host vanished) fails the wait at
    // once, and the next call connects afresh.
    std::unique_ptr<zmq::socket_t> owned_socket;
    std::unique_ptr<zmq::socket_t> monitor;  // ZMQ_EVENT_DISCONNECTED of owned_socket
    bool lost = false;

    LinkConn() = default;
    LinkConn(const LinkConn&) = delete;
    LinkConn& operator=(const LinkConn&) = delete;
    /// Stops the monitor before its reader closes: libzmq's I/O thread would block for ever on an
    /// event nobody can receive.
    ~LinkConn();
    /// True if the connection was closed since it was made (reads the monitor without waiting).
    bool disconnected();
    std::uint64_t next_rid = 1;
    std::vector<std::uint64_t> awaited;  // sent, not answered yet
    std::vector<Reply> stash;            // answers that came while another was awaited
};

class BrokerLink {
public:
    /// The link to the broker at `endpoint` (or named so by a remote link's broker).
    static BrokerLink& get(const std::string& endpoint);
    /// The link a received handle names: a link made or joined already under that endpoint or
    /// name, else a new link to it if it is an ipc:// or tcp:// endpoint. ProtocolError for a
    /// name no link answers to (a broker this process has not joined).
    static BrokerLink& named(const std::string& name);
    /// Joins the broker at tcp `endpoint` with `security`: connects and says HELLO now, waiting
    /// up to `timeout` for a broker to answer. AuthenticationError for a refused key (within
    /// milliseconds), BrokerLost if nobody answers in time, ValueError for a link to that endpoint
    /// that already uses other credentials.
    static BrokerLink& join(const std::string& endpoint, const transport::TcpSecurity& security,
                            std::chrono::milliseconds timeout);
    /// The link to this process's broker (the runtime's); in the root, starts the embedded broker
    /// if none runs yet. ProcessError in a process that has no broker.
    static BrokerLink& local();

    const std::string& endpoint() const { return endpoint_; }
    /// The broker's name, as handles carry it: the endpoint for a link on this host; for a
    /// remote link, what the broker's HELLO said (the endpoint until then).
    std::string name() const;
    /// Over tcp: no arena, no pidfd on the broker.
    bool remote() const { return remote_; }

    /// This process's index at the broker: the owner id written in lock words. The first call
    /// in each process (and after fork) costs one round trip.
    std::uint32_t client_index();

    /// The broker's same-host arena, or nullptr if it has none. `prefix` names its segments (it
    /// comes with HELLO and inside handles); the segments are mapped on first use.
    Arena* arena(const std::string& prefix);
    /// The arena HELLO announced (nullptr: none, or no HELLO yet).
    Arena* arena() const { return arena_.load(std::memory_order_acquire); }

    /// One request and its reply. Error statuses are raised: value_error as ValueError,
    /// broken_barrier as BrokenBarrierError, protocol_error as ProtocolError; a broker that dies
    /// meanwhile as ProcessError.
    Reply call(Op op, std::uint64_t object, std::initializer_list<std::int64_t> args);
    /// call() with a second frame after the envelope (a queue batch, sent without a copy).
    Reply call(Op op, std::uint64_t object, std::initializer_list<std::int64_t> args, std::string payload);
    /// Sends a request that gets no reply (QUEUE_TAKEN).
    void post(Op op, std::uint64_t object, std::initializer_list<std::int64_t> args);
    /// The halves of call(), for a request answered twice (COND_WAIT): send() returns the
    /// request id; receive() waits for the next reply to it.
    std::uint64_t send(Op op, std::uint64_t object, std::initializer_list<std::int64_t> args);
    Reply receive(std::uint64_t rid);

    // References (handle.hpp). All go, in order, through this process's reference channel to this
    // broker (made on first use: one round trip). They raise ProcessError if the broker is gone.

    /// Sets a reference to `object` aside for the receiver of a message; returns its token.
    std::uint64_t hold_for_message(std::uint64_t object);
    /// Takes a reference to `object` (the one set aside as `token`, if it is still there).
    void claim(std::uint64_t object, std::uint64_t token);
    /// Drops one of this process's references to `object`. Never raises: a broker that is gone has
    /// nothing left to free.
    void drop(std::uint64_t object) noexcept;
    /// Waits up to `timeout` until the broker has handled every reference message this process
    /// sent (at exit: so that a handle sent just before is still alive when it arrives).
    void sync_references(std::chrono::milliseconds timeout) noexcept;
    /// Handles on this broker's objects alive in this process (ObjectRef counts them).
    std::atomic<long> live_handles{0};

    /// Before a child starts: the reference channel exists and this process's arena record is
    /// mapped, so that fork() can hand the child its references without a round trip.
    void prepare_children();
    /// fork() handlers (client.cpp registers them for every link): the parent reserves a fork
    /// entry in its arena record and tells the broker after fork() (FORK_HOLD); the child writes
    /// its pid in the entry. The reference channel's mutex is held across fork().
    void fork_prepare();
    void fork_parent();
    void fork_child();

    /// Notes that this process acquired a Semaphore unit through the broker.
    void note_broker_holding();
    /// At a normal exit: the semaphore units this process holds stay taken (only a process that
    /// is killed or crashes gets them returned). Called for every link by an exit hook.
    void keep_holdings();

private:
    explicit BrokerLink(std::string endpoint)
        : endpoint_(std::move(endpoint)), remote_(endpoint_.rfind("tcp://", 0) == 0) {}
    /// Connects `socket` to a tcp endpoint with this link's credentials and waits for the
    /// handshake's outcome.
    void connect_remote(zmq::context_t& context, zmq::socket_t& socket, std::chrono::milliseconds timeout) const;
    /// A DEALER connected to this broker (inproc when it runs in this very process).
    zmq::socket_t connect(zmq::context_t& context) const;
    zmq::socket_t connect(zmq::context_t& context, std::chrono::milliseconds remote_timeout) const;
    LinkConn& conn();
    /// Says HELLO on a new connection: learns this process's index, the arena, the broker's pid.
    void hello_on(LinkConn& c);
    /// The reference channel of this process (made on first use); call with ref_mutex_ held.
    LinkConn& ref_channel();
    void post_ref(Op op, std::uint64_t object, std::initializer_list<std::int64_t> args);
    std::uint64_t send_on(LinkConn& c, Op op, std::uint64_t object, std::initializer_list<std::int64_t> args,
                          std::string* payload = nullptr, bool awaited = true);
    Reply receive_on(LinkConn& c, std::uint64_t rid, const Deadline& deadline);

    const std::string endpoint_;
    const bool remote_;
    mutable std::mutex remote_mutex_;                 // guards the four below
    std::optional<transport::TcpSecurity> security_;  // a remote link's; unset: the run's authkey
    std::chrono::milliseconds connect_timeout_{60000};
    std::string name_;                                     // what the broker's HELLO said (remote links)
    bool joined_ = false;                                  // join() succeeded: its credentials are the link's for good
    std::atomic<bool> lost_connection_{false};             // a remote connection was lost: reconnect briefly
    std::atomic<std::uint64_t> registered_generation_{0};  // the fork generation of the last HELLO
    std::atomic<std::uint64_t> holdings_generation_{0};    // ... of the last broker-path semaphore acquire
    std::atomic<std::uint32_t> index_{0};
    std::atomic<pid_t> broker_pid_{0};
    std::atomic<int> broker_pidfd_{-1};
    std::atomic<Arena*> arena_{nullptr};  // never destroyed

    std::mutex ref_mutex_;
    std::unique_ptr<LinkConn> ref_conn_;                    // the reference channel (its socket: ref_socket_)
    zmq::socket_t* ref_socket_ = nullptr;                   // a parent's is abandoned, never closed, in a child
    std::uint64_t ref_generation_ = 0;                      // the fork generation ref_conn_ belongs to
    std::chrono::steady_clock::time_point ref_retry_at_{};  // a remote broker's channel failed: not before
    std::uint64_t token_seed_ = 0;                          // random per process: tokens of a parent and a child differ
    std::uint64_t token_generation_ = 0;
    std::uint64_t tokens_ = 0;
    bool ref_unsynced_ = false;        // posted since the last sync
    ForkEntry* fork_entry_ = nullptr;  // reserved in fork_prepare()
    std::uint32_t fork_entry_index_ = 0;
    std::uint64_t fork_token_ = 0;
};

/// Raises the exception a reply's error status stands for (Full and Empty included); returns the
/// reply otherwise.
const Reply& checked(const Reply& reply);

/// The pid and thread id of the caller, kept right across fork() (cached per thread).
pid_t current_pid();
std::uint32_t current_tid();

}  // namespace zmp::detail::broker

namespace zmp::detail {

/// Starts this root process's broker on a background thread, unless the runtime already names a
/// broker; returns the runtime's broker endpoint. ProcessError in a process that is not the root
/// and was given no broker endpoint.
std::string ensure_broker();
/// Has this root process's broker serve tcp `endpoint` with `security` (zmp::serve); starts it,
/// without shared memory, if it is not running. Returns the endpoint bound. ProcessError outside
/// the root or in a process that uses another broker; ValueError if it runs with shared memory.
std::string serve_embedded_tcp(const std::string& endpoint, const transport::TcpSecurity& security);
/// If `endpoint` is the broker embedded in this very process: its inproc endpoint (faster for
/// this process's own threads); otherwise empty. ProcessError once that broker has stopped.
std::string embedded_inproc_endpoint(const std::string& endpoint);

}  // namespace zmp::detail
