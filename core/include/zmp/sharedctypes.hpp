#pragma once
// zmp::Value, zmp::Array, zmp::RawValue, zmp::RawArray: Python's multiprocessing.sharedctypes in
// C++ — typed values and arrays in shared memory, seen by every process that holds a handle.
//
//     zmp::Value<long> counter(0);                  // Value('l', 0)
//     zmp::Array<int> arr({1, 2, 3});               // Array('i', [1, 2, 3])
//     zmp::Process p([=] {
//         std::lock_guard guard(counter.get_lock());
//         counter.set(counter.value() + 1);         // counter.value += 1, atomic under the lock
//         for (int& x : arr) x = -x;                // arr[i] = -arr[i], the lock still held
//     });
//     p.start(); p.join();                          // counter.value() == 1, arr[0] == -1
//
// Element types: any trivially copyable T (arithmetic types, enums, plain structs); the bytes
// of T are what is shared, so T must not hold pointers into one process's memory.
//
// Handles. Value and Array are small copyable handles: copies refer to the same shared memory,
// and const only protects the handle, not the shared data (like std::span). A default-made
// handle is empty: every call on it raises ValueError.
//
// Sharing. A forked child inherits the mapping with the handle. A handle may also travel in a
// message (through a Pipe, as an argument of a spawned or forkserver child, inside any msgpack
// value): it travels by the name of its segment, and the receiving process maps the segment when
// it decodes the handle — once per process, whatever the number of handles.
//
// Lifetime. The segment lives as long as the process that created it holds a handle on it
// (copies and Values sharing its lock included). When that process drops its last one, the name
// is removed: processes that have the segment mapped keep using it, but a handle decoded after
// that raises FileNotFoundError. Whatever is left when the root process exits (a creator that
// was killed, a handle never destroyed) is removed then, or by the next root if the root was killed.
//
// Locking. Value(x) and Array(n) come with a lock (get_lock(), a zmp::ValueLock): process-shared,
// recursive like Python's RLock, and robust — a process that dies holding it does not wedge the
// others (see ValueLock). value(), set(), get(), set(i, x), slice() and set_slice() each take the lock, as in
// Python, so each call alone is atomic; but `v.set(v.value() + 1)` is two calls, exactly as
// Python's `v.value += 1` is not atomic. Hold get_lock() around both, or use fetch_add():
//
//     { std::lock_guard guard(v.get_lock()); v.set(v.value() + 1); }   // Python's way
//     v.fetch_add(1);                                                   // lock-free, which Python lacks
//
// operator[], get_obj(), data() and iteration give direct references: they never lock (hold
// get_lock() yourself). With `lock = false`, or as RawValue / RawArray, there is no lock at all.
//
// Threading: handles may be used from any thread; the shared data is only as safe as the
// locking above.

#include <msgpack.hpp>

#include <algorithm>
#include <atomic>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <optional>
#include <ranges>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "zmp/detail/handle_codec.hpp"
#include "zmp/detail/lock_cell.hpp"
#include "zmp/errors.hpp"
#include "zmp/function.hpp"
#include "zmp/timeout.hpp"

namespace zmp {

namespace detail {
class SharedBlock;  // one library segment as this process maps it
}  // namespace detail

/// The lock of a Value or Array (Python's RLock that `get_lock()` returns), living in the same
/// shared memory. It is BasicLockable and Lockable, so std::lock_guard, std::unique_lock and
/// std::scoped_lock work with it.
///
///     std::lock_guard guard(v.get_lock());
///     if (v.get_lock().owner_died()) { /* the last holder died inside: check the data */ }
///
/// - Recursive: the thread that holds it may take it again; it is free once every lock() has
///   its unlock(). Only the holding thread may unlock it (ValueError otherwise, as Python's
///   "cannot release un-acquired lock").
/// - Robust: if the process (or thread) holding it dies, the next one to lock it gets it, and
///   owner_died() then returns true until that holder releases it. The data the dead holder was
///   changing may be half-changed; zmp cannot know — check or repair it. The lock itself keeps
///   working. A forked child does not inherit its parent's hold.
/// - Handles: copies are the same lock; a ValueLock keeps its segment mapped. Destroying the last
///   handle on a segment while holding its lock leaves the segment mapped (never unmapped under
///   a holder).
class ValueLock {
public:
    /// An empty handle: every call raises ValueError.
    ValueLock() = default;

    /// Blocks until this thread holds the lock (immediately if it already does).
    void lock() const {
        detail::LockCell& cell = checked_cell();
        const std::uint64_t me = detail::thread_token();
        if (detail::owner_of(cell).load(std::memory_order_relaxed) == me)
            ++cell.depth;
        else
            take(cell, me);
    }
    /// Takes the lock if that is possible without waiting; true if this thread now holds it.
    bool try_lock() const;
    /// Releases one level. ValueError if this thread does not hold it.
    void unlock() const {
        detail::LockCell& cell = checked_cell();
        if (detail::owner_of(cell).load(std::memory_order_relaxed) != detail::thread_token()) throw_not_owned();
        if (--cell.depth == 0) give_back(cell);
    }

    /// Python's acquire(block=True, timeout=None): false if `block` is false and the lock is
    /// taken, or if `timeout` passes first (a negative timeout counts as zero).
    bool acquire(bool block = true, Timeout timeout = forever) const;
    /// Python's release(): the same as unlock().
    void release() const;

    /// True if this thread holds the lock and took it over from a holder that died holding it.
    bool owner_died() const;
    /// True if this thread holds the lock.
    bool owned() const;

    /// Same lock (in this process, a lock has one address whatever the number of handles).
    friend bool operator==(const ValueLock& a, const ValueLock& b) { return a.cell_ == b.cell_; }

    // For Value/Array and their wire format.
    ValueLock(std::shared_ptr<detail::SharedBlock> block, detail::LockCell* cell)
        : block_(std::move(block)), cell_(cell) {}
    const std::shared_ptr<detail::SharedBlock>& block() const { return block_; }
    detail::LockCell* cell() const { return cell_; }

private:
    detail::LockCell& checked_cell() const {
        if (cell_ == nullptr) throw_empty();
        return *cell_;
    }
    [[noreturn]] static void throw_empty();
    [[noreturn]] static void throw_not_owned();
    static void take(detail::LockCell& cell, std::uint64_t me);  // waits for the mutex, records the hold
    static void give_back(detail::LockCell& cell);               // the last level: unlock the mutex

    std::shared_ptr<detail::SharedBlock> block_;
    detail::LockCell* cell_ = nullptr;
};

/// The `lock` argument of Value and Array, as in Python: true (a new lock, the default), false
/// (no lock), or an existing ValueLock to share with another Value or Array.
///
///     zmp::Value<int> a(0);  zmp::Value<int> b(0, a.get_lock());   // one lock guards both
class LockOption {
public:
    LockOption(bool make_lock) : make_(make_lock) {}
    LockOption(ValueLock existing) : existing_(std::move(existing)) {}
    /// Python raises AttributeError for lock='x'; here it does not compile.
    LockOption(const char*) = delete;

    bool make() const { return make_; }
    const std::optional<ValueLock>& existing() const { return existing_; }

private:
    bool make_ = false;
    std::optional<ValueLock> existing_;
};

namespace detail {

/// What a process checks about the element type of a segment it maps.
struct ElementType {
    std::uint32_t kind = 0;  // 1 bool, 2 signed integer, 3 unsigned integer, 4 floating, 5 enum, 6 other
    std::uint32_t size = 0;
    std::uint32_t align = 0;
    bool operator==(const ElementType&) const = default;
    MSGPACK_DEFINE(kind, size, align)
};

/// Arithmetic types whose atomic operations work across processes (lock-free ones: the others
/// would use a lock private to each process).
template <class T>
concept shared_atomic = std::is_arithmetic_v<T> && std::atomic_ref<T>::is_always_lock_free;
template <class T>
concept shared_atomic_arithmetic = shared_atomic<T> && !std::is_same_v<T, bool>;

template <class T>
constexpr ElementType element_type_of() {
    std::uint32_t kind = std::is_same_v<T, bool>       ? 1
                         : std::is_integral_v<T>       ? (std::is_signed_v<T> ? 2 : 3)
                         : std::is_floating_point_v<T> ? 4
                         : std::is_enum_v<T>           ? 5
                                                       : 6;
    std::size_t align = alignof(T);
    if constexpr (std::is_arithmetic_v<T>) align = std::max(align, std::atomic_ref<T>::required_alignment);
    return {kind, static_cast<std::uint32_t>(sizeof(T)), static_cast<std::uint32_t>(align)};
}

/// Where a lock lives: a segment and an offset in it.
struct LockAddress {
    std::string segment;
    std::uint64_t offset = 0;
    MSGPACK_DEFINE(segment, offset)
};

/// A Value or Array on the wire: a name and a shape, never the data.
struct SharedArrayWire {
    std::string what;  // "zmp.Value" or "zmp.Array"
    std::string segment;
    std::uint64_t count = 0;
    ElementType type;
    std::optional<LockAddress> lock;
    MSGPACK_DEFINE(what, segment, count, type, lock)
};

/// The untyped part of Value<T> and Array<T>: a segment mapped in this process, where the
/// elements start, how many there are, and the lock if there is one.
class SharedArrayCore {
public:
    SharedArrayCore() = default;
    /// A new segment holding `count` zero-filled elements of `type`, with the lock `lock` asks for.
    SharedArrayCore(ElementType type, std::size_t count, const LockOption& lock);
    /// The segment a received handle names, mapped in this process and checked against what
    /// the receiver expects: ProtocolError if it is something else, FileNotFoundError if the
    /// segment is gone. With `with_lock` false the handle is made without its lock (RawValue).
    static SharedArrayCore from_wire(const SharedArrayWire& wire, std::string_view what, ElementType type,
                                     bool with_lock);
    SharedArrayWire to_wire(std::string_view what) const;
    /// The same elements, guarded by `lock`: true makes a new lock (in a small segment of its
    /// own), or an existing ValueLock. ValueError for false, an empty lock or an empty handle.
    SharedArrayCore synchronized(const LockOption& lock) const;
    /// A new segment, without a lock, holding a copy of the elements (read under this core's lock
    /// when it has one). ValueError for an empty handle.
    SharedArrayCore copied() const;

    std::byte* data() const {
        if (data_ == nullptr) throw_empty();
        return data_;
    }
    std::size_t count() const {
        if (data_ == nullptr) throw_empty();
        return count_;
    }
    bool has_lock() const { return lock_.cell() != nullptr; }
    /// ValueError if there is no lock.
    ValueLock& lock() const {
        if (!has_lock()) throw_no_lock();
        return lock_;
    }

private:
    [[noreturn]] void throw_empty() const;
    [[noreturn]] void throw_no_lock() const;

    std::shared_ptr<SharedBlock> block_;
    std::byte* data_ = nullptr;
    std::size_t count_ = 0;
    mutable ValueLock lock_;  // a handle: locking it does not change the Value that holds it
};

/// Python's index rules: negative counts from the end; IndexError outside [0, size).
std::size_t checked_index(std::ptrdiff_t index, std::size_t size);
/// Python's slice rules for [start, stop): negative counts from the end, then clamped.
std::pair<std::size_t, std::size_t> slice_bounds(std::ptrdiff_t start, std::ptrdiff_t stop, std::size_t size);

template <class T>
T read_shared(const T* p) {
    if constexpr (shared_atomic<T>)
        return std::atomic_ref<T>(*const_cast<T*>(p)).load(std::memory_order_relaxed);
    else
        return *p;
}

template <class T>
void write_shared(T* p, const T& value) {
    if constexpr (shared_atomic<T>)
        std::atomic_ref<T>(*p).store(value, std::memory_order_relaxed);
    else
        *p = value;
}

/// Takes the lock of `core` for the scope, if it has one.
class MaybeLocked {
public:
    explicit MaybeLocked(const SharedArrayCore& core) : lock_(core.has_lock() ? &core.lock() : nullptr) {
        if (lock_ != nullptr) lock_->lock();
    }
    // unlock() raises only for a lock this thread does not hold, and this one locked it.
    ~MaybeLocked() {  // NOLINT(bugprone-exception-escape)
        if (lock_ != nullptr) lock_->unlock();
    }
    MaybeLocked(const MaybeLocked&) = delete;
    MaybeLocked& operator=(const MaybeLocked&) = delete;

private:
    const ValueLock* lock_;
};

}  // namespace detail

/// Python's Value(typecode, init, lock=True): one T in shared memory.
///
///     zmp::Value<double> v(0.0);   v.set(3.14);   double x = v.value();
///     zmp::Value<Point> p(Point{1, 2});            // any trivially copyable struct
template <class T>
class Value {
    static_assert(std::is_trivially_copyable_v<T>, "a zmp::Value<T> needs a trivially copyable T");

public:
    using value_type = T;

    /// An empty handle (for containers and messages); every call on it raises ValueError.
    Value() = default;
    /// A new T in shared memory, equal to `initial`; `lock` as in Python (see LockOption).
    /// ValueError for an empty ValueLock; OSError if the system cannot make the segment.
    explicit Value(const T& initial, LockOption lock = true) : core_(detail::element_type_of<T>(), 1, lock) {
        ::new (static_cast<void*>(core_.data())) T(initial);
    }

    /// Python's v.value: a copy, read under the lock if there is one.
    T value() const {
        detail::MaybeLocked guard(core_);
        return detail::read_shared(ptr());
    }
    /// Python's v.value = x: written under the lock if there is one.
    void set(const T& value) const {
        detail::MaybeLocked guard(core_);
        detail::write_shared(ptr(), value);
    }
    /// Python's get_obj(): the T itself, never locked.
    T& get_obj() const { return *ptr(); }

    /// The lock (ValueError if this Value has none).
    ValueLock& get_lock() const { return core_.lock(); }
    bool has_lock() const { return core_.has_lock(); }

    // Atomic operations for lock-free arithmetic T, which Python lacks. They do not take the lock
    // and are atomic across processes on their own; do not mix them with updates made under the
    // lock (set(value() + 1)), which they do not wait for.
    T load(std::memory_order order = std::memory_order_seq_cst) const requires detail::shared_atomic<T> {
        return std::atomic_ref<T>(*ptr()).load(order);
    }
    void store(T value, std::memory_order order = std::memory_order_seq_cst) const requires detail::shared_atomic<T> {
        std::atomic_ref<T>(*ptr()).store(value, order);
    }
    T exchange(T value, std::memory_order order = std::memory_order_seq_cst) const requires detail::shared_atomic<T> {
        return std::atomic_ref<T>(*ptr()).exchange(value, order);
    }
    /// If the value equals `expected`, replaces it with `desired` and returns true; otherwise
    /// stores the current value in `expected` and returns false.
    bool compare_exchange(T& expected, T desired,
                          std::memory_order order = std::memory_order_seq_cst) const requires detail::shared_atomic<T> {
        return std::atomic_ref<T>(*ptr()).compare_exchange_strong(expected, desired, order);
    }
    /// Adds `delta` atomically and returns the previous value.
    T fetch_add(T delta, std::memory_order order =
                             std::memory_order_seq_cst) const requires detail::shared_atomic_arithmetic<T> {
        return std::atomic_ref<T>(*ptr()).fetch_add(delta, order);
    }
    T fetch_sub(T delta, std::memory_order order =
                             std::memory_order_seq_cst) const requires detail::shared_atomic_arithmetic<T> {
        return std::atomic_ref<T>(*ptr()).fetch_sub(delta, order);
    }

    // For the msgpack adaptor: how this handle travels.
    static constexpr std::string_view wire_kind = "zmp.Value";
    static constexpr bool wire_keeps_lock = true;
    explicit Value(detail::SharedArrayCore core) : core_(std::move(core)) {}
    const detail::SharedArrayCore& core() const { return core_; }

private:
    T* ptr() const { return reinterpret_cast<T*>(core_.data()); }

    detail::SharedArrayCore core_;
};

/// Python's Array(typecode, size_or_initializer, lock=True): a fixed number of T in shared memory.
///
///     zmp::Array<int> zeros(10);                    // Array('i', 10): ten zeros
///     zmp::Array<int> some({1, 2, 3});              // Array('i', [1, 2, 3])
///     zmp::Array<double> from(std::views::iota(0, 5) | std::views::transform(to_double));
///
/// Note `Array<int>(5)` is five zeros and `Array<int>({5})` is one five.
template <class T>
class Array {
    static_assert(std::is_trivially_copyable_v<T>, "a zmp::Array<T> needs a trivially copyable T");

public:
    using value_type = T;
    using size_type = std::size_t;
    using iterator = T*;

    /// An empty handle (for containers and messages); every call on it raises ValueError.
    Array() = default;
    /// `size` value-initialized elements (zeros for arithmetic T).
    explicit Array(std::size_t size, LockOption lock = true) requires std::is_default_constructible_v<T>
        : core_(detail::element_type_of<T>(), size, lock) {
        if constexpr (!std::is_trivially_default_constructible_v<T>) {
            for (std::size_t i = 0; i < size; ++i) ::new (static_cast<void*>(ptr() + i)) T();
        }
    }
    /// The given elements, in order.
    Array(std::initializer_list<T> values, LockOption lock = true)
        : core_(detail::element_type_of<T>(), values.size(), lock) {
        fill(values);
    }
    /// The elements of any range convertible to T (a vector, a view...).
    template <std::ranges::input_range R>
    requires(std::convertible_to<std::ranges::range_reference_t<R>, T> &&
             !std::is_base_of_v<Array, std::remove_cvref_t<R>>) explicit Array(R&& values, LockOption lock = true) {
        if constexpr (std::ranges::sized_range<R>) {
            core_ = detail::SharedArrayCore(detail::element_type_of<T>(), std::ranges::size(values), lock);
            fill(values);
        } else {
            std::vector<T> copy;
            for (auto&& x : values) copy.push_back(static_cast<T>(x));
            core_ = detail::SharedArrayCore(detail::element_type_of<T>(), copy.size(), lock);
            fill(copy);
        }
    }

    /// Python's len(arr).
    std::size_t size() const { return core_.count(); }
    bool empty() const { return size() == 0; }

    /// Direct access (never locked, unchecked, like std::span).
    T& operator[](std::size_t i) const { return ptr()[i]; }
    T* data() const { return ptr(); }
    T* begin() const { return ptr(); }
    T* end() const { return ptr() + size(); }
    /// Python's get_obj(): the elements as a span (never locked).
    std::span<T> get_obj() const { return {ptr(), size()}; }

    /// Python's arr[i] (negative i counts from the end): a copy read under the lock.
    /// IndexError outside the array.
    T get(std::ptrdiff_t index) const {
        detail::MaybeLocked guard(core_);
        return detail::read_shared(ptr() + detail::checked_index(index, size()));
    }
    /// Python's arr[i] = x, under the lock. IndexError outside the array.
    void set(std::ptrdiff_t index, const T& value) const {
        detail::MaybeLocked guard(core_);
        detail::write_shared(ptr() + detail::checked_index(index, size()), value);
    }
    /// Python's arr[start:stop] (negative bounds count from the end, then are clamped): a copy
    /// taken under the lock. slice() is arr[:].
    std::vector<T> slice(std::ptrdiff_t start, std::ptrdiff_t stop) const {
        detail::MaybeLocked guard(core_);
        auto [from, to] = detail::slice_bounds(start, stop, size());
        std::vector<T> out;
        out.reserve(to - from);
        for (std::size_t i = from; i < to; ++i) out.push_back(detail::read_shared(ptr() + i));
        return out;
    }
    std::vector<T> slice() const { return slice(0, static_cast<std::ptrdiff_t>(size())); }
    /// Python's arr[start:stop] = values, under the lock. ValueError unless `values` has as many
    /// elements as the slice ("Can only assign sequence of same size").
    void set_slice(std::ptrdiff_t start, std::ptrdiff_t stop, std::span<const T> values) const {
        detail::MaybeLocked guard(core_);
        auto [from, to] = detail::slice_bounds(start, stop, size());
        if (values.size() != to - from) throw ValueError("Can only assign sequence of same size");
        for (std::size_t i = from; i < to; ++i) detail::write_shared(ptr() + i, values[i - from]);
    }

    /// The lock (ValueError if this Array has none).
    ValueLock& get_lock() const { return core_.lock(); }
    bool has_lock() const { return core_.has_lock(); }

    // For the msgpack adaptor: how this handle travels.
    static constexpr std::string_view wire_kind = "zmp.Array";
    static constexpr bool wire_keeps_lock = true;
    explicit Array(detail::SharedArrayCore core) : core_(std::move(core)) {}
    const detail::SharedArrayCore& core() const { return core_; }

private:
    T* ptr() const { return reinterpret_cast<T*>(core_.data()); }
    template <class R>
    void fill(const R& values) {
        T* out = ptr();
        for (auto&& x : values) ::new (static_cast<void*>(out++)) T(static_cast<T>(x));
    }

    detail::SharedArrayCore core_;
};

/// Python's RawValue: a Value with no lock (same as Value<T>(x, false), with get_lock() gone).
template <class T>
class RawValue : public Value<T> {
public:
    RawValue() = default;
    explicit RawValue(const T& initial) : Value<T>(initial, false) {}
    ValueLock& get_lock() const = delete;
    static constexpr bool wire_keeps_lock = false;  // a received locked Value is viewed without it
    explicit RawValue(detail::SharedArrayCore core) : Value<T>(std::move(core)) {}
};

/// Python's RawArray: an Array with no lock (same as Array<T>(..., false), with get_lock() gone).
template <class T>
class RawArray : public Array<T> {
public:
    RawArray() = default;
    explicit RawArray(std::size_t size) : Array<T>(size, false) {}
    RawArray(std::initializer_list<T> values) : Array<T>(values, false) {}
    template <std::ranges::input_range R>
    requires(std::convertible_to<std::ranges::range_reference_t<R>, T> &&
             !std::is_base_of_v<Array<T>, std::remove_cvref_t<R>>) explicit RawArray(R&& values)
        : Array<T>(std::forward<R>(values), false) {}
    ValueLock& get_lock() const = delete;
    static constexpr bool wire_keeps_lock = false;  // a received locked Array is viewed without it
    explicit RawArray(detail::SharedArrayCore core) : Array<T>(std::move(core)) {}
};

/// Python's sharedctypes.synchronized(obj, lock=None): a handle on the same shared elements as
/// `obj` (a RawValue, a RawArray, or any Value or Array), with a lock, so that value(), set(),
/// get(i), set(i, x), slice() and set_slice() lock as a Value's do and get_lock() returns it;
/// get_obj() is obj's own memory. `lock`: true (the default, Python's lock=None) makes a new
/// recursive, robust lock; or give an existing ValueLock (another Value's or Array's) to share
/// it. Whatever lock `obj` had, the result uses `lock`; obj itself is unchanged (a RawValue stays
/// unlocked: updates through it do not wait for the lock). The result is a Value or Array in
/// every way: it travels in messages and to children of every start method with its lock.
/// Lifetime: the elements' segment lives as `obj`'s does (its creator's handles); a new lock's
/// segment as long as this process holds a handle on it.
/// Errors: ValueError for an empty handle, `lock = false` or an empty ValueLock; OSError if
/// the system cannot make the lock's segment. Threading: any thread.
///
///     zmp::RawValue<long> raw(0);
///     zmp::Value<long> counter = zmp::synchronized(raw);   // { lock_guard g(counter.get_lock()); ... }
template <class T>
Value<T> synchronized(const Value<T>& obj, LockOption lock = true) {
    return Value<T>(obj.core().synchronized(lock));
}
template <class T>
Array<T> synchronized(const Array<T>& obj, LockOption lock = true) {
    return Array<T>(obj.core().synchronized(lock));
}

/// Python's sharedctypes.copy(obj): a new RawValue or RawArray, in a segment of its own, holding
/// the same bytes as `obj` now; later changes to either are not seen by the other. `obj` may
/// have a lock (a Value, an Array, a synchronized() handle): it is held while the elements are
/// copied, so the copy is a consistent snapshot; without one it is a plain byte copy, like
/// Python's. The copy is this process's, as if made here with RawValue/RawArray (Lifetime above).
/// Errors: ValueError for an empty handle; OSError if the system cannot make the segment.
/// Threading: any thread.
///
///     zmp::RawArray<int> snapshot = zmp::copy(shared);    // shared keeps changing; snapshot does not
///     zmp::RawValue<double> before = zmp::copy(v);
template <class T>
RawValue<T> copy(const Value<T>& obj) {
    return RawValue<T>(obj.core().copied());
}
template <class T>
RawArray<T> copy(const Array<T>& obj) {
    return RawArray<T>(obj.core().copied());
}

// Value, Array, RawValue and RawArray travel in any msgpack value (a Pipe message, a spawned
// child's arguments, a Process or Pool argument under every start method) as the name of their
// segment; decoding maps it (see "Sharing" above). Their adaptor: handle_codec.hpp.
namespace detail {
template <class H>
struct shared_array_handle : std::false_type {};
template <class T>
struct shared_array_handle<Value<T>> : std::true_type {};
template <class T>
struct shared_array_handle<RawValue<T>> : std::true_type {};
template <class T>
struct shared_array_handle<Array<T>> : std::true_type {};
template <class T>
struct shared_array_handle<RawArray<T>> : std::true_type {};

template <class H>
requires shared_array_handle<H>::value struct HandleCodec<H> {
    static SharedArrayWire to_wire(const H& handle) { return handle.core().to_wire(H::wire_kind); }
    static H from_wire(const msgpack::object& obj) {
        return H(SharedArrayCore::from_wire(obj.as<SharedArrayWire>(), H::wire_kind,
                                            element_type_of<typename H::value_type>(), H::wire_keeps_lock));
    }
};
}  // namespace detail

}  // namespace zmp
