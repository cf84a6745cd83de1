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

namespace zmp::detail::broker {

class Arena;
struct ForkEntry;

/// One thread's connection to one broker.
struct LinkConn {
    zmq::socket_ref socket;
    std::uint64_t next_rid = 1;
    std::vector<std::uint64_t> awaited;  // sent, not answered yet
    std::vector<Reply> stash;            // answers that came while another was awaited
};

class BrokerLink {
public:
    /// The link to the broker at `endpoint`.
    static BrokerLink& get(const std::string& endpoint);
    /// The link to this process's broker (the runtime's); in the root, starts the embedded broker
    /// if none runs yet. ProcessError in a process that has no broker.
    static BrokerLink& local();

    const std::string& endpoint() const { return endpoint_; }

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
    explicit BrokerLink(std::string endpoint) : endpoint_(std::move(endpoint)) {}
    /// A DEALER connected to this broker (inproc when it runs in this very process).
    zmq::socket_t connect(zmq::context_t& context) const;
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
    std::atomic<std::uint64_t> registered_generation_{0};  // the fork generation of the last HELLO
    std::atomic<std::uint64_t> holdings_generation_{0};    // ... of the last broker-path semaphore acquire
    std::atomic<std::uint32_t> index_{0};
    std::atomic<pid_t> broker_pid_{0};
    std::atomic<int> broker_pidfd_{-1};
    std::atomic<Arena*> arena_{nullptr};  // never destroyed

    std::mutex ref_mutex_;
    std::unique_ptr<LinkConn> ref_conn_;   // the reference channel (its socket: ref_socket_)
    zmq::socket_t* ref_socket_ = nullptr;  // a parent's is abandoned, never closed, in a child
    std::uint64_t ref_generation_ = 0;     // the fork generation ref_conn_ belongs to
    std::uint64_t token_seed_ = 0;         // random per process: tokens of a parent and a child differ
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
/// If `endpoint` is the broker embedded in this very process: its inproc endpoint (faster for
/// this process's own threads); otherwise empty. ProcessError once that broker has stopped.
std::string embedded_inproc_endpoint(const std::string& endpoint);

}  // namespace zmp::detail
