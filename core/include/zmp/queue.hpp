#pragma once
// Queues shared between processes: Python's multiprocessing.Queue, SimpleQueue and JoinableQueue.
//
//     zmp::Queue<std::string> q;
//     zmp::Process p([](zmp::Queue<std::string> q) { q.put("hello"); }, q);
//     p.start(); std::string s = q.get(); p.join();
//
// A queue lives in the broker of the run, which owns its items: a multi-producer,
// multi-consumer FIFO (items of one producer process arrive in the order it put them) with an
// exact size and a real maxsize. Each item is delivered to exactly one consumer:
//   - a consumer that dies (even by SIGKILL) returns to the queue every item it had not taken yet
//     (a consumer may receive a few items ahead of its get() calls: those go back);
//   - a consumer that stops calling get() (for 20 ms) while others wait on an empty queue gives
//     its received-ahead items back;
//   - a producer that exits right after put() still delivers: at exit, each process waits until
//     the broker has acknowledged every item it put (Python's join_thread()), unless it called
//     cancel_join_thread() on the handle it put them through.
//
// Handles. Queue<T> is a small copyable handle: copies, forked children, and processes that get
// it as a Process or Pool argument or inside any message (every start method) use the same queue.
// A queue lives while a handle on it exists anywhere (a process, or a message on its way), as
// sync.hpp says under Lifetime; the broker frees it, and the items left in it, with the last one.
//
// Items are msgpack values of T (any type zmp can send: arithmetic types, strings, containers,
// MSGPACK_DEFINE'd structs, zmp's handles); Queue<> holds zmp::AnyValue, values of any type.
// put() serializes the item, so a value that cannot be packed raises there and nothing is sent;
// an item larger than the queue's max_item_bytes raises ValueError in put(). A received item
// that does not convert to T raises ProtocolError in get().
//
// Across hosts (a broker that serves tcp, zmp/remote.hpp; for its consumers on every host, since
// such a broker has no shared memory): each item is still delivered to at
// most one consumer, never twice, and each producer's order is kept, but delivery is at most once:
// without shared memory there is no cursor to take back with, so an item is the consumer's once
// the broker has handed it to that consumer's connection, one item per get(). If the consumer
// dies or its host is cut off after that and before get() returns, the item is lost. Exactly once
// across hosts needs a take/acknowledge protocol, which is not built yet.
//
// put() on a queue without maxsize (and on a SimpleQueue) returns once the item is handed to this
// process's feeder thread, which sends items to the broker in batches, in order (as Python's
// feeder thread does): so qsize() and empty() seen from another process may lag a put() that has
// just returned. qsize(), empty() and full() called in the putting process first wait for its own
// items to arrive. On a queue with maxsize, and on a JoinableQueue, put() returns only once the
// broker holds the item.
//
// Timeouts: any std::chrono duration; zmp::forever (the default) waits for ever; a negative
// timeout means zero; with block=false the timeout is ignored.
//
// Errors: zmp::Empty and zmp::Full as above; ValueError after close() and for bad arguments;
// ProcessError when the broker is gone.
//
// Order: each producer's items reach every consumer in the order they were put. Items given back
// by a consumer that died, or that sat idle while another waited, return to their place in the
// queue; a consumer that took later items meanwhile then sees an earlier one after them.
//
// Threading: handles may be used from any thread of any process.

#include <msgpack.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>

#include "zmp/any_value.hpp"
#include "zmp/detail/handle_codec.hpp"
#include "zmp/errors.hpp"
#include "zmp/function.hpp"
#include "zmp/timeout.hpp"
#include "zmp/transport/codec.hpp"

namespace zmp {

/// How a queue is made; Queue<T>(maxsize, options).
struct QueueOptions {
    /// The largest item the queue accepts, counted serialized (a string's msgpack header is 5
    /// bytes); larger ones raise ValueError in put(). The default takes a 64 MiB string or
    /// buffer with room for its header. At most kMaxQueueItemBytes.
    std::size_t max_item_bytes = (64u << 20) + 4096;
};
/// The hard ceiling on an item's size: 256 MiB.
inline constexpr std::size_t kMaxQueueItemBytes = 256u << 20;

namespace detail {

struct QueueState;

/// The type-erased queue behind Queue<T>, SimpleQueue<T> and JoinableQueue<T>: items are
/// serialized msgpack bytes. Semantics as documented at the top of this file.
class QueueCore {
public:
    enum class Kind : std::uint8_t { queue, simple, joinable };

    /// Creates a queue in this process's broker. ValueError for a bad max_item_bytes.
    QueueCore(Kind kind, std::int64_t maxsize, const QueueOptions& options);

    void put_bytes(std::string_view item, bool block, const Timeout& timeout) const;
    /// The next item's bytes, valid until this thread's next get on this queue.
    std::string_view get_view(bool block, const Timeout& timeout) const;
    std::int64_t qsize() const;
    bool full() const;
    void close() const;
    /// Waits until this process's items put so far are in the broker.
    void flush() const;
    /// flush(), unless cancel_join_thread() was called on this handle.
    void join_thread() const;
    void cancel_join_thread() const;
    void task_done() const;
    bool join(const Timeout& timeout) const;
    std::int64_t maxsize() const;

    bool operator==(const QueueCore& other) const;

    /// The wire form: [broker endpoint, queue id, kind, maxsize, max item bytes, token] (the token
    /// names the reference the sender set aside for the receiver).
    struct Wire {
        std::string endpoint;
        std::uint64_t id = 0;
        std::uint8_t kind = 0;
        std::int64_t maxsize = 0;
        std::uint64_t max_item_bytes = 0;
        std::uint64_t token = 0;
        MSGPACK_DEFINE(endpoint, id, kind, maxsize, max_item_bytes, token)
    };
    /// Sets a reference aside for the receiver (sync.hpp, Lifetime).
    Wire to_wire() const;
    /// ProtocolError unless `obj` is a handle of a queue of kind `kind` (a Queue handle also
    /// accepts a JoinableQueue) whose broker this process can reach.
    static QueueCore from_wire(const msgpack::object& obj, Kind kind);

private:
    explicit QueueCore(std::shared_ptr<QueueState> state) : state_(std::move(state)) {}
    std::shared_ptr<QueueState> state_;
};

// Each thread's reusable packing buffer, reached through a trivially destructible pointer: a
// put() from an exit hook or an atexit handler runs after the thread's thread_local objects are
// destroyed, and must then find no buffer (and pack into one of its own) rather than a dead one.
inline thread_local msgpack::sbuffer* thread_pack_buffer = nullptr;
inline thread_local bool thread_pack_buffer_gone = false;
struct ThreadPackBufferOwner {
    ~ThreadPackBufferOwner() {
        delete thread_pack_buffer;
        thread_pack_buffer = nullptr;
        thread_pack_buffer_gone = true;
    }
};
inline msgpack::sbuffer* pack_buffer_of_this_thread() {
    if (thread_pack_buffer == nullptr && !thread_pack_buffer_gone) {
        thread_local ThreadPackBufferOwner owner;  // frees the buffer when the thread ends
        thread_pack_buffer = new msgpack::sbuffer(256);
    }
    return thread_pack_buffer;
}

/// Packs `item` into this thread's reusable buffer and passes the bytes to `use`.
template <class T, class Use>
void with_packed_item(const T& item, Use&& use) {
    if constexpr (std::is_same_v<T, AnyValue>) {
        use(std::string_view(item.bytes()));  // packed already
    } else {
        msgpack::sbuffer* reused = pack_buffer_of_this_thread();
        if (reused == nullptr) {  // this thread is ending
            msgpack::sbuffer own(256);
            msgpack::pack(own, item);
            use(std::string_view(own.data(), own.size()));
            return;
        }
        msgpack::sbuffer& buffer = *reused;
        buffer.clear();
        msgpack::pack(buffer, item);
        struct Trim {  // a huge item's buffer is not kept for ever
            msgpack::sbuffer& buffer;
            ~Trim() {
                if (buffer.size() > (std::size_t{1} << 20)) std::free(buffer.release());
            }
        } trim{buffer};
        use(std::string_view(buffer.data(), buffer.size()));
    }
}

template <class T>
T unpack_item(std::string_view bytes) {
    if constexpr (std::is_same_v<T, AnyValue>) {
        return AnyValue::from_bytes(bytes);
    } else {
        return transport::decode_as<T>(bytes.data(), bytes.size());
    }
}

template <class T>
inline constexpr bool queue_item_ok = is_packable_v<T> && !std::is_reference_v<T> && !std::is_const_v<T>;

}  // namespace detail

/// Python's multiprocessing.Queue: a FIFO shared by any number of producer and consumer processes.
///
///     zmp::Queue<int> q(100);            // maxsize 100; 0 or negative: unbounded
///     q.put(7); int x = q.get(1s);       // get raises zmp::Empty after 1 s without an item
///
/// zmp::Queue<> (T = zmp::AnyValue) holds values of any type, as a Python queue does.
template <class T = AnyValue>
class Queue {
    static_assert(detail::queue_item_ok<T>,
                  "Queue<T>: T must be a value type that msgpack can pack (see zmp::is_packable)");

public:
    /// A new queue in this run's broker (started if need be). maxsize <= 0: unbounded.
    explicit Queue(std::int64_t maxsize = 0, const QueueOptions& options = {})
        : core_(detail::QueueCore::Kind::queue, maxsize, options) {}

    /// Puts one item; waits for room while the queue is full (up to `timeout`), then raises Full.
    /// block=false: raises Full at once when full. ValueError after close() or for an item too
    /// large; the item's own packing errors propagate.
    void put(const T& item, bool block = true, Timeout timeout = forever) const {
        detail::with_packed_item(item, [&](std::string_view bytes) { core_.put_bytes(bytes, block, timeout); });
    }
    void put(const T& item, Timeout timeout) const { put(item, true, timeout); }
    void put_nowait(const T& item) const { put(item, false); }

    /// Takes one item; waits for one (up to `timeout`), then raises Empty. block=false: raises
    /// Empty at once when there is none. ValueError after close().
    T get(bool block = true, Timeout timeout = forever) const {
        return detail::unpack_item<T>(core_.get_view(block, timeout));
    }
    T get(Timeout timeout) const { return get(true, timeout); }
    T get_nowait() const { return get(false); }

    /// The number of items in the queue (put and not yet taken by a get()).
    std::int64_t qsize() const { return core_.qsize(); }
    bool empty() const { return qsize() == 0; }
    /// True when maxsize > 0 and qsize() >= maxsize.
    bool full() const { return core_.full(); }
    std::int64_t maxsize() const { return core_.maxsize(); }

    /// This handle (and its copies in this process) will not be used any more: waits until the
    /// items it put are in the broker (not after cancel_join_thread()); afterwards put() and get() raise ValueError.
    /// The queue itself, and handles elsewhere, go on. Closing twice is fine.
    void close() const { core_.close(); }
    /// Python's join_thread(): waits until the items this process put are in the broker (it also
    /// happens by itself at exit). Returns at once after cancel_join_thread() on this handle.
    void join_thread() const { core_.join_thread(); }
    /// Python's cancel_join_thread() ("allow exit without flush"): this process will not wait for
    /// the items put through this handle (and its copies here) to reach the broker — neither at
    /// exit nor in join_thread() or close(). While the process lives its items are delivered as
    /// usual; when it exits, those its feeder has not sent yet are dropped, and a batch on its way
    /// to a broker that has not answered yet arrives whole or not at all (never twice, never in
    /// part, each producer's order kept: what arrives is a prefix of what was put). Items of other
    /// queues, and of handles not cancelled, are still waited for. For a process that must exit
    /// now even when the broker is slow or unreachable, and can lose items. A queue with maxsize
    /// and a JoinableQueue have nothing to lose (put() returns once the broker holds the item):
    /// there it changes nothing. Cannot be undone; no errors. Threading: any thread.
    ///
    ///     q.put(progress); q.cancel_join_thread();
    ///     return;   // exits at once, even if the broker never answers; `progress` may be lost
    void cancel_join_thread() const { core_.cancel_join_thread(); }

    bool operator==(const Queue& other) const { return core_ == other.core_; }
    /// For the msgpack adaptor.
    const detail::QueueCore& core() const { return core_; }
    explicit Queue(detail::QueueCore core) : core_(std::move(core)) {}

protected:
    Queue(detail::QueueCore::Kind kind, std::int64_t maxsize, const QueueOptions& options)
        : core_(kind, maxsize, options) {}
    detail::QueueCore core_;
};

/// Python's multiprocessing.SimpleQueue: an unbounded queue with put, get, empty and close.
///
///     zmp::SimpleQueue<std::string> q;
///     q.put("x"); auto s = q.get();
template <class T = AnyValue>
class SimpleQueue {
    static_assert(detail::queue_item_ok<T>, "SimpleQueue<T>: T must be a value type that msgpack can pack");

public:
    SimpleQueue() : core_(detail::QueueCore::Kind::simple, 0, {}) {}
    explicit SimpleQueue(detail::QueueCore core) : core_(std::move(core)) {}

    void put(const T& item) const {
        detail::with_packed_item(item, [&](std::string_view bytes) { core_.put_bytes(bytes, true, forever); });
    }
    T get() const { return detail::unpack_item<T>(core_.get_view(true, forever)); }
    bool empty() const { return core_.qsize() == 0; }
    void close() const { core_.close(); }

    bool operator==(const SimpleQueue& other) const { return core_ == other.core_; }
    const detail::QueueCore& core() const { return core_; }

private:
    detail::QueueCore core_;
};

/// Python's multiprocessing.JoinableQueue: a Queue whose consumers mark items done, so that a
/// producer can wait until all the work is finished.
///
///     q.put(job);                 // in the producer
///     auto j = q.get(); work(j); q.task_done();   // in each consumer
///     q.join();                   // returns once every item put has been marked done
template <class T = AnyValue>
class JoinableQueue : public Queue<T> {
public:
    explicit JoinableQueue(std::int64_t maxsize = 0, const QueueOptions& options = {})
        : Queue<T>(detail::QueueCore::Kind::joinable, maxsize, options) {}
    explicit JoinableQueue(detail::QueueCore core) : Queue<T>(std::move(core)) {}

    /// Marks one item taken by get() as done. ValueError if called more times than items were put.
    void task_done() const { this->core_.task_done(); }
    /// Waits until every item put has been marked done; with a timeout, returns false if that did
    /// not happen in time.
    bool join(Timeout timeout = forever) const { return this->core_.join(timeout); }
};

}  // namespace zmp

namespace zmp::detail {
template <class Q>
struct queue_handle_kind;
template <class T>
struct queue_handle_kind<Queue<T>> {
    static constexpr auto value = QueueCore::Kind::queue;
};
template <class T>
struct queue_handle_kind<SimpleQueue<T>> {
    static constexpr auto value = QueueCore::Kind::simple;
};
template <class T>
struct queue_handle_kind<JoinableQueue<T>> {
    static constexpr auto value = QueueCore::Kind::joinable;
};
}  // namespace zmp::detail

// Handles travel as Process and Pool arguments and inside messages (handle_codec.hpp).
namespace zmp::detail {
template <class Q>
requires requires { queue_handle_kind<Q>::value; }
struct HandleCodec<Q> {
    static QueueCore::Wire to_wire(const Q& q) { return q.core().to_wire(); }
    static Q from_wire(const msgpack::object& obj) { return Q(QueueCore::from_wire(obj, queue_handle_kind<Q>::value)); }
};
}  // namespace zmp::detail
