#pragma once
// The contract between the broker's server and the kinds of object it serves.
//
// The server (server.cpp) owns everything that is not one kind's semantics: the loop, the client
// processes and their connections, requests and replies, waiters and their deadlines, reference
// counts, and the arena's slots. A kind (objects/<kind>.cpp) owns its objects' state and meaning:
// what each of its ops does, what happens when a waiter's deadline passes, what a dead client
// leaves behind, and what to give back when an object is freed. Kinds never see sockets, pidfds or
// other kinds.
//
// Adding a kind (the Manager's dict, say) touches:
//   - protocol.hpp: its Kind value, and the Ops it answers (each op's name goes in op_name());
//   - objects/<kind>.cpp: a class derived from Object and a KindEntry describing it (how CREATE's
//     arguments make one — make_object<T> for a class constructed from them —, and which member
//     function answers each op), declared in kinds.hpp;
//   - objects/kinds.cpp: one line in the registry.
// The server needs no change: it looks the entry up by kind and the handler up by op.
//
// Rules a kind follows:
//   - Handlers run on the broker's thread, one at a time; they never block.
//   - A request is answered exactly once, through Services::reply (or reply_with_batch), either
//     at once or later through a waiter. A handler that finds the request wrong calls refuse():
//     the server answers it with that status and text, and the object must be unchanged.
//   - A waiter, once added, belongs to the server until the kind takes it back (take_waiter). The
//     server calls on_timeout() when its deadline passes, and drop_waiter() when its client died;
//     in both cases the kind removes the id from its own queues.
//   - Every object the server frees (its last reference is gone) gets on_destroy() first; the
//     server then refuses whatever waiters it still has.
//   - Reference counts are the server's; a kind that holds others' objects goes through keep(),
//     release() and give_reference().
//   - Client is opaque: kinds compare pointers (an owner, a holder) and never keep one past
//     on_client_death() for that client.

#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "broker/protocol.hpp"

namespace zmp::detail::broker {

class Arena;

using Clock = std::chrono::steady_clock;
inline constexpr Clock::time_point kNever = Clock::time_point::max();
using WaiterId = std::uint64_t;

/// What a status request (broker/status.hpp, zmp-status) says of one object beyond its kind and
/// id: named numbers ("depth", "holder_pid", "waiters"...).
using StatusFields = std::vector<std::pair<std::string, std::int64_t>>;

/// A client process, as the server knows it (opaque to kinds).
struct Client;

/// Who sent a request: one connection (a thread) of a client process.
struct Caller {
    std::string routing_id;
    Client* client = nullptr;
    std::uint32_t tid = 0;
};

/// A request that waits for its answer (a blocked acquire, a getter on an empty queue...).
struct Waiter {
    Caller caller;
    std::uint64_t rid = 0;
    std::uint64_t object = 0;
    Clock::time_point deadline = kNever;
    std::int64_t arg = 0;            // the kind's: a depth to restore, an arrival index, most items
    std::vector<std::string> batch;  // the kind's: items waiting for room
};

/// Waiter ids in arrival order. Small and cheap to make: an object with no waiter allocates nothing.
class WaitQueue {
public:
    bool empty() const { return head_ == ids_.size(); }
    std::size_t size() const { return ids_.size() - head_; }
    WaiterId front() const { return ids_[head_]; }
    void push_back(WaiterId id) { ids_.push_back(id); }
    void pop_front();
    /// Removes `id`; true if it was here.
    bool erase(WaiterId id);
    bool contains(WaiterId id) const;
    void clear() {
        ids_.clear();
        head_ = 0;
    }
    /// Takes every id out, oldest first.
    std::vector<WaiterId> take_all();

private:
    std::vector<WaiterId> ids_;
    std::size_t head_ = 0;
};

/// A request refused: the server answers it with `status` and `text`.
struct Refused {
    Status status;
    std::string text;
};
[[noreturn]] void refuse(Status status, std::string text);
/// Argument i of `r`; a protocol_error refusal when it is missing.
std::int64_t arg(const Request& r, std::size_t i);
/// A request's timeout argument as a point in time for the timers (kNever: none); saturating.
Clock::time_point deadline_from(std::int64_t timeout_ns);

/// What the server offers a kind.
class Services {
public:
    /// Answers request `rid` of `to`. False when the answer could not be handed over (its
    /// connection is gone, or it does not read its answers): a kind that gave something with the
    /// answer (a lock, a unit, items) takes it back.
    virtual bool reply(const Caller& to, std::uint64_t rid, Status status,
                       std::initializer_list<std::int64_t> values = {}, std::string_view text = {}) = 0;
    bool reply(const Waiter& w, Status status, std::initializer_list<std::int64_t> values = {},
               std::string_view text = {}) {
        return reply(w.caller, w.rid, status, values, text);
    }
    /// An ok answer with `batch` as its second frame (queue items), handed over without a copy.
    virtual bool reply_with_batch(const Caller& to, std::uint64_t rid, std::initializer_list<std::int64_t> values,
                                  std::string batch) = 0;

    /// Registers `w` (its deadline, if any, with the timers) and appends its id to `queue`.
    virtual WaiterId add_waiter(WaitQueue& queue, Waiter w) = 0;
    /// Takes waiter `id` back from the server (and its timer). The caller has already removed it
    /// from its own queues.
    virtual Waiter take_waiter(WaiterId id) = 0;
    virtual Waiter& waiter(WaiterId id) = 0;
    /// Stops the timer of waiter `id`: it waits without a deadline from now on.
    virtual void clear_deadline(WaiterId id) = 0;

    /// The same-host arena (nullptr: this broker has none; every object lives here).
    virtual Arena* arena() = 0;
    /// A zeroed slot of the arena, and one given back (its object or delivery is gone).
    virtual std::uint32_t allocate_slot() = 0;
    virtual void release_slot(std::uint32_t index) = 0;

    /// Calls `object`.on_tick() about every kTickInterval from now on, until it returns false.
    virtual void want_ticks(std::uint64_t object) = 0;
    /// Notes that connection `routing_id` has state in `object` (a queue delivery): the server
    /// calls `object`.on_connection_gone() when that connection is forgotten.
    virtual void note_connection_state(const std::string& routing_id, std::uint64_t object) = 0;

    /// References an object holds on others (a Manager's named objects): keep() takes one (false
    /// when `object` does not exist), release() gives it back (the object may then be freed).
    virtual bool keep(std::uint64_t object) = 0;
    virtual void release(std::uint64_t object) = 0;
    /// Gives `to`'s process a reference to `object` (which exists: kept by the caller), as CREATE
    /// gives its creator one; the process's handle drops it as usual.
    virtual void give_reference(const Caller& to, std::uint64_t object) = 0;

protected:
    ~Services() = default;
};

inline constexpr std::chrono::milliseconds kTickInterval{10};

/// CREATE's arguments, read: [kind, value, timeout ns, shared, has action].
struct CreateArgs {
    Kind kind;
    std::int64_t value = 0;
    std::int64_t timeout_ns = kForever;
    bool has_action = false;
    /// The object's state goes in the arena (the client asked, this broker has one, the kind can).
    bool shared = false;
};

/// What an object's arena slot starts with (fast_path.hpp: init_slot): `value` (a semaphore's
/// value, a barrier's parties) and `timeout_ns` (a barrier's default).
struct SlotStart {
    std::int64_t value = 0;
    std::int64_t timeout_ns = kForever;
};

/// One object of the broker. The kind's class derives from it.
class Object {
public:
    Object(std::uint64_t id, Kind kind) : id_(id), kind_(kind) {}
    Object(std::uint64_t id, const CreateArgs& args) : Object(id, args.kind) {}
    virtual ~Object() = default;
    Object(const Object&) = delete;
    Object& operator=(const Object&) = delete;

    std::uint64_t id() const { return id_; }
    Kind kind() const { return kind_; }
    /// Its slot in the arena when its state lives there (the fast path), else -1. The server
    /// refuses every op on an object in the arena: processes operate on the slot themselves.
    std::int64_t slot() const { return slot_; }

    /// Waiter `id` of this object passed its deadline: answer it, remove it from the kind's queues
    /// and take it back.
    virtual void on_timeout(Services& s, WaiterId id) = 0;
    /// Waiter `id` of this object belongs to a client that died: remove it from the kind's queues
    /// (the server takes it back afterwards; nobody is answered).
    virtual void drop_waiter(Services& s, WaiterId id) = 0;
    /// After all its waiters were dropped: undo what `client` held here (a lock, semaphore units,
    /// a barrier's action it was running).
    virtual void on_client_death(Services& /*s*/, Client& /*client*/) {}
    /// `client` is exiting normally (KEEP_HOLDINGS): semaphore units it took stay taken.
    virtual void on_client_exit(Services& /*s*/, Client& /*client*/) {}
    /// A connection that had state here (note_connection_state) is gone.
    virtual void on_connection_gone(Services& /*s*/, const std::string& /*routing_id*/) {}
    /// Periodic work asked for with want_ticks(); false: no more ticks.
    virtual bool on_tick(Services& /*s*/, Clock::time_point /*now*/) { return false; }
    /// The object is being freed: give back what it holds outside itself. The default gives
    /// back its arena slot; an override calls it too.
    virtual void on_destroy(Services& s);
    /// For a status request: what the kind can tell of the object's state (the server describes
    /// an object in the arena from its slot instead). The default tells nothing more.
    virtual void describe(Services& /*s*/, StatusFields& /*out*/) const {}

    /// For make_object(): the object's state goes in a new arena slot that starts as `start` says.
    void place_in_arena(Services& s, SlotStart start);
    /// What its arena slot starts with; a kind whose slot starts otherwise hides this with its own.
    SlotStart slot_start() const { return {}; }

private:
    std::int64_t slot_ = -1;
    const std::uint64_t id_;
    const Kind kind_;
};

/// How an op is answered: the kind's member function, bound by op<&T::member>().
using OpHandler = void (*)(Object&, Services&, const Caller&, const Request&);

template <auto Method>
struct OpBinder;
template <class T, void (T::*Method)(Services&, const Caller&, const Request&)>
struct OpBinder<Method> {
    static void call(Object& o, Services& s, const Caller& c, const Request& r) {
        (static_cast<T&>(o).*Method)(s, c, r);
    }
};
template <auto Method>
constexpr OpHandler op() {
    return &OpBinder<Method>::call;
}

/// The KindEntry::make of a kind whose class T is made as T(id, args) (a constructor that finds
/// CREATE's arguments wrong calls refuse()): its state goes in the arena when `args.shared`,
/// starting as T::slot_start() says.
template <class T>
std::unique_ptr<Object> make_object(Services& s, std::uint64_t id, const CreateArgs& args) {
    auto object = std::make_unique<T>(id, args);
    if (args.shared) object->place_in_arena(s, object->slot_start());
    return object;
}

/// One kind (or a family of kinds sharing a class, like Lock and RLock).
struct KindEntry {
    std::vector<Kind> kinds;
    /// Whether its state can live in the arena (Lock, Event...); Condition and queues cannot.
    bool fast_path = false;
    /// Makes object `id` from CREATE's arguments; refuse() for bad ones.
    std::unique_ptr<Object> (*make)(Services& s, std::uint64_t id, const CreateArgs& args);
    /// Its ops and their handlers.
    std::vector<std::pair<Op, OpHandler>> ops;
};

}  // namespace zmp::detail::broker
