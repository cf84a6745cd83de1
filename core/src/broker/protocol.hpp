#pragma once
// The broker's wire protocol. Every message is one ZeroMQ frame holding one
// msgpack array:
//
//   request   [op, object, request-id, [arg, ...]]        args are integers
//   reply     [request-id, status, [value, ...], text]     values are integers
//
// Queue items travel in a second frame after the envelope (QUEUE_PUT's request, QUEUE_GET's
// reply; MANAGER_CALL's request and reply too): a batch, each item a 4-byte little-endian length and that many bytes (encode_batch).
//
// A client thread talks through its own DEALER; the broker's ROUTER adds the routing id. The first
// message on every DEALER is HELLO(pid, tid), which ties that connection to its process (whose
// death the broker then watches through a pidfd) and to its thread (the owner of an RLock).
// Every reply echoes the request id; a blocking request is answered once, when its condition
// holds or its deadline passes. COND_WAIT is the one request answered twice: "registered" at
// once, then "notified" or "timed out".

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include <msgpack.hpp>
#include <zmq.hpp>

#include "zmp/detail/deadline.hpp"
#include "zmp/errors.hpp"
#include "zmp/timeout.hpp"

namespace zmp::detail::broker {

/// The broker cannot be reached any more (it died, or this process's own broker has stopped).
/// A ProcessError for users; told apart internally so that unlock() in a guard's destructor does
/// not throw for a lock nobody can hold any more.
class BrokerLost : public ProcessError {
public:
    using ProcessError::ProcessError;
};

enum class Op : std::uint8_t {
    hello = 1,      // [pid, tid] -> [client index, broker pid], text: arena prefix ("" = no arena);
                    // over tcp [pid, tid, incarnation] -> ..., text: the broker's name;
                    // + optionally [name, host], who the process is (broker/status.hpp)
    create,         // [kind, value, timeout ns, shared] -> [object id, slot or -1]
    acquire,        // [block, timeout ns, depth to restore or 0] -> [acquired, owner died]
    release,        // [] -> []
    release_all,    // [] -> [depth]: releases every recursion level (Condition.wait)
    owned,          // [] -> [owned by the calling thread]
    get_value,      // [] -> [value]
    event_set,      // [] -> []
    event_clear,    // [] -> []
    event_is_set,   // [] -> [flag]
    event_wait,     // [timeout ns] -> [flag]
    cond_wait,      // [timeout ns] -> status registered, then [notified]
    cond_notify,    // [n or -1 for all] -> [woken]
    barrier_wait,   // [timeout ns] -> [index]; status run_action to the last arrival of a barrier with an action
    barrier_done,   // [action succeeded] -> []   (from the party that ran the action)
    barrier_abort,  // [] -> []
    barrier_reset,  // [] -> []
    barrier_state,  // [] -> [parties, n_waiting, broken]
    stats,          // [] -> [dropped, errors, clients, objects, connections, waiters, held aside, slots, unsent]
    keep_holdings,  // [] -> []: this process exits normally; the semaphore units it holds stay taken
    queue_put,      // [block, timeout ns, count] + batch -> []; status full when there is no room in time
    queue_get,      // [block, timeout ns, max items] -> [count, cursor slot or -1] + batch; status empty
    queue_taken,    // [] -> no reply: the caller took items of its delivery (a bounded queue has room)
    queue_size,     // [] -> [items in the queue]
    task_done,      // [] -> []
    queue_join,     // [timeout ns] -> [every item done]
    // References (handle.hpp). Sent on a process's reference channel; none is answered but ref_sync.
    ref_drop,   // [] -> none: this process drops one reference to the object
    ref_hold,   // [token] -> none: one reference set aside for the receiver of a message
    ref_claim,  // [token] -> none: this process takes a reference (the one set aside as `token`)
    fork_hold,  // [entry, token] -> none: a child was just forked; it holds what this process holds
    ref_sync,   // [] -> []: answered once everything sent before it on this connection is done
    // The Manager's objects (objects/managed.hpp says the methods, their items and outcomes).
    manager_call,  // [method, item count, int...] + items -> [outcome, int...] + items
    status,        // [] -> [objects, clients] + a msgpack map of them (broker/status.hpp), for zmp-status;
                   // the one request answered on a connection that has not said HELLO
};
inline constexpr std::uint8_t kLastOp = static_cast<std::uint8_t>(Op::status);

// create's arguments for a queue: [kind, maxsize, max item bytes, 0, 0].
enum class Kind : std::uint8_t {
    lock = 1,
    rlock,
    semaphore,
    bounded_semaphore,
    event,
    condition,
    barrier,
    queue,
    joinable_queue,
    // create's arguments for the Manager's objects: [kind, manager id, 0, 0, 0] (the manager: [kind, 0...]).
    manager,
    manager_dict,
    manager_list,
    manager_namespace,
    manager_value,
};
inline constexpr std::uint8_t kLastKind = static_cast<std::uint8_t>(Kind::manager_value);

enum class Status : std::uint8_t {
    ok = 0,
    registered,      // COND_WAIT: the waiter is queued; the second reply follows
    run_action,      // BARRIER_WAIT: you are the last arrival; run the action, then BARRIER_DONE
    value_error,     // misuse (release of an unlocked lock...): text says what
    broken_barrier,  // the barrier is broken
    protocol_error,  // malformed request, unknown op or object, HELLO missing
    full,            // QUEUE_PUT: no room before the deadline
    empty,           // QUEUE_GET: no item before the deadline
};
inline constexpr std::uint8_t kLastStatus = static_cast<std::uint8_t>(Status::empty);

/// Timeout encodings in requests: a non-negative number of nanoseconds, or these.
inline constexpr std::int64_t kForever = -1;
inline constexpr std::int64_t kBarrierDefault = -2;  // BARRIER_WAIT: the barrier's own timeout

/// A call's timeout as a request argument: nanoseconds (saturating), or kForever.
inline std::int64_t encode_timeout(const Timeout& timeout) {
    return timeout ? Deadline::nanoseconds_of(*timeout) : kForever;
}
/// What is left of `deadline` as a request argument (a call that asks again keeps its deadline).
inline std::int64_t encode_timeout(const Deadline& deadline) {
    if (deadline.is_never()) return kForever;
    return std::chrono::duration_cast<std::chrono::nanoseconds>(deadline.remaining()).count();
}
/// The broker's side: a request's timeout argument as a deadline from `now`; any negative value
/// (kForever) is never, and a huge one saturates to never rather than overflowing.
inline Deadline decode_timeout(std::int64_t timeout_ns, Deadline::Clock::time_point now) {
    return timeout_ns < 0 ? Deadline::never() : Deadline::after_ns(timeout_ns, now);
}

inline constexpr std::size_t kMaxArgs = 6;
inline constexpr std::size_t kMaxValues = 10;
/// Largest envelope frame either side accepts: envelopes are tiny.
inline constexpr std::int64_t kMaxFrame = 64 * 1024;
/// Largest frame of any kind (ZMQ_MAXMSGSIZE on both sides): a batch holding one largest queue item.
inline constexpr std::int64_t kMaxBatchFrame = (std::int64_t{256} << 20) + 4096;

/// Liveness over tcp (both ends set these ZMTP heartbeats on their sockets): a remote client whose
/// host vanishes is dead for the broker within kRemoteDeathBound (server.hpp says how).
inline constexpr std::chrono::milliseconds kHeartbeatIvl{1000};
inline constexpr std::chrono::milliseconds kHeartbeatTimeout{3000};
inline constexpr std::chrono::milliseconds kLivenessProbe{500};
inline constexpr std::chrono::milliseconds kRemoteDeathBound = kHeartbeatIvl + kHeartbeatTimeout + kLivenessProbe;

struct Request {
    Op op{};
    std::uint64_t object = 0;
    std::uint64_t rid = 0;
    std::array<std::int64_t, kMaxArgs> args{};
    std::size_t nargs = 0;
    const std::string_view* payload = nullptr;  // the frame after the envelope (QUEUE_PUT's batch), if any
};

struct Reply {
    std::uint64_t rid = 0;
    Status status = Status::ok;
    std::array<std::int64_t, kMaxValues> values{};
    std::size_t nvalues = 0;
    std::string text;
    zmq::message_t payload;  // the frame after the envelope, if any

    /// values[i], or 0 when the reply has fewer values.
    std::int64_t value(std::size_t i) const { return i < nvalues ? values[i] : 0; }
};

void encode_request(msgpack::sbuffer& out, Op op, std::uint64_t object, std::uint64_t rid,
                    std::initializer_list<std::int64_t> args);
void encode_reply(msgpack::sbuffer& out, std::uint64_t rid, Status status, std::initializer_list<std::int64_t> values,
                  std::string_view text = {});

/// Decoding checks the shape strictly; anything else raises ProtocolError. A request whose
/// request id could be read but whose rest is wrong reports it through `rid_seen`, so that the
/// broker can answer with an error instead of dropping it.
Request decode_request(const void* data, std::size_t size, std::uint64_t* rid_seen = nullptr);
Reply decode_reply(const void* data, std::size_t size);

const char* op_name(Op op);

/// Appends one item to a batch.
void append_item(std::string& batch, std::string_view item);
/// Splits a batch into its items; ProtocolError unless it holds exactly `count` well-formed items.
std::vector<std::string_view> split_batch_views(std::string_view batch, std::size_t count);

}  // namespace zmp::detail::broker
