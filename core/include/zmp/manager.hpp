#pragma once
// Python's multiprocessing.Manager(): shared dicts, lists, Namespaces and Values that any process
// of the run reads and changes through proxies, plus the Queue, Lock, Event... zmp already shares.
//
//     zmp::Manager manager;
//     auto counts = manager.dict<std::string, int>();
//     zmp::Process p([counts] { counts["hits"] += 1; });   // an atomic increment, not get-then-set
//     p.start(); p.join(); int hits = counts["hits"];
//
// Where the objects live. Python starts a server process per Manager. zmp's Manager puts its
// objects in the broker of the run, the process that already serves its Locks and Queues: a
// dict, a list, a Namespace and a Value are broker objects like those, so they get what every
// broker object has — a proxy is a handle that travels anywhere (copies, forked children, Process
// and Pool arguments under every start method, inside any message), each process and thread
// talks to the broker over its own connection (a proxy shared across fork keeps working: Python's
// gh-101320 cannot happen), garbage sent to the broker is refused without changing anything, and
// an object is freed with its last handle. The Manager object itself is a handle on a small
// broker object that its objects belong to.
//
// Values are copied. Every operation is one round trip to the broker, which keeps each value as
// msgpack bytes: a value read is a copy (mutating it changes nothing shared), a value stored is
// copied in. K, V and T are any types zmp can send (zmp::is_packable); AnyValue, the default,
// holds values of any type. Keys and values compare by their msgpack bytes: an integer is equal
// to the same integer of any integer type, and a whole double (1.0) packs as that integer, so 1
// and 1.0 are one key, as in Python; a float and a double of the same value differ.
// A stored value that does not convert to the proxy's type raises ProtocolError when read.
//
// Atomicity. Each operation is atomic: the broker runs one at a time. `d[k] += 1` is one atomic
// increment (Python's DictProxy makes it a get and a set, and loses updates between processes);
// so are increment(), compare_and_set() and setdefault(). update_with(k, fn) runs fn in the
// calling process and retries with compare_and_set until no other process changed the value in
// between. get_many() and update() read and write many keys in one round trip.
//
// Lifetime and shutdown. shutdown(), the destructor (in the process that made the Manager), or
// the death of that process shut the manager down: each of its dicts, lists, Namespaces and
// Values is emptied at once, and every later operation on one of their proxies raises
// ProcessError("... has shut down"), in any process. A proxy whose broker is gone (its root
// process died) raises ProcessError at once, whatever it was doing. The Queues, Locks and
// Events a Manager hands out are the run's ordinary objects: they live as long as their handles,
// shutdown or not.
//
// Errors: the referent's exceptions cross back with their type — KeyError (a missing key),
// IndexError (an index out of range), ValueError (list.index/remove of a value the list does not
// hold), TypeError (increment of a value that is not a number, sort of values that do not order),
// AttributeError (a missing Namespace field); ProcessError for a manager shut down or a broker
// gone. The object is unchanged by an operation that raised.
//
// Threading: proxies and the Manager may be used from any thread of any process.
//
// SharedMemoryManager (below): Python's, which makes SharedMemory segments and ShareableLists and
// unlinks them all at shutdown.
//
// Managers on an address (Python's BaseManager(address, authkey) with start() or serve_forever(),
// and connect() in another program): Manager::serve("tcp://*:50000", key) makes this process's
// broker also serve that tcp endpoint (zmp::serve: CURVE keys from the authkey) and makes it the
// manager served there; Manager::connect("tcp://host:50000", key) in an unrelated program joins
// that broker (zmp::connect) and the manager. Both sides then reach the same named objects —
// Python's registered typeids, as names: publish(name, object) names any handle (a dict, list,
// Namespace or Value proxy, a Queue, Lock, Event...), get<H>(name) hands it to any program of the
// manager, and get_or_create<H>(name) makes it once for all. A connecting program with another
// key gets AuthenticationError (at once, not after a timeout); a program whose server was killed
// gets ProcessError from its next call (the call in progress fails at once, a later one after at
// most half a second of trying to reconnect). The named objects live as long as the manager.
//
//     // server:  auto m = zmp::Manager::serve("tcp://*:50000", key);
//     //          m.publish("jobs", m.Queue<int>());   ...   m.shutdown();
//     // client:  auto m = zmp::Manager::connect("tcp://server:50000", key);
//     //          m.get<zmp::Queue<int>>("jobs").put(7);
//
// Not here (yet): BaseManager-style custom types registered by name.

#include <msgpack.hpp>

#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "zmp/any_value.hpp"
#include "zmp/authkey.hpp"
#include "zmp/detail/handle_codec.hpp"
#include "zmp/detail/managed_wire.hpp"
#include "zmp/detail/object_handle.hpp"
#include "zmp/errors.hpp"
#include "zmp/queue.hpp"
#include "zmp/shared_memory.hpp"
#include "zmp/sync.hpp"

namespace zmp {

namespace detail {

enum class ManagedKind : std::uint8_t { dict, list, namespace_, value };

/// The items of a request to a Manager's object (managed_wire.hpp): each one packed value.
class ManagedItems {
public:
    template <class T>
    ManagedItems& add(const T& value) {
        with_packed_item(value, [&](std::string_view bytes) { add_bytes(bytes); });
        return *this;
    }
    /// An empty item: "absent" (compare_and_set's expected value for a missing key).
    ManagedItems& add_absent() {
        add_bytes({});
        return *this;
    }
    void add_bytes(std::string_view bytes);
    std::size_t count() const { return count_; }
    std::string& bytes() { return bytes_; }

private:
    std::string bytes_;
    std::size_t count_ = 0;
};

/// A Manager object's answer: one integer result (found, a length, a position) and items.
struct ManagedReply {
    std::int64_t result = 0;
    std::size_t count = 0;
    std::string batch;
    /// The items' bytes (views of `batch`; an empty one is "absent").
    std::vector<std::string_view> items() const;
    template <class T>
    T item(std::size_t i) const {
        return unpack_item<T>(items().at(i));
    }
    template <class T>
    std::vector<T> all() const {
        std::vector<T> out;
        out.reserve(count);
        for (std::string_view bytes : items()) out.push_back(unpack_item<T>(bytes));
        return out;
    }
};

/// One call on a Manager's object, with up to two integer arguments. Raises the referent's
/// exception (KeyError...), ProcessError when its manager has shut down or its broker is gone.
ManagedReply managed_call(const ObjectHandle& object, managed::Method method, ManagedItems items = {},
                          std::int64_t a = 0, std::int64_t b = 0);
ObjectWire managed_to_wire(const ObjectHandle& object);
/// ProtocolError unless `obj` is a handle of a Manager's object of kind `kind`.
ObjectHandle managed_from_wire(const msgpack::object& obj, ManagedKind kind);

template <class T>
inline constexpr bool managed_value_ok = is_packable_v<T> && !std::is_reference_v<T> && !std::is_const_v<T>;

/// A manager's named object as name_get answered it: its handle's wire (tokens 0), and the
/// references the broker gave this process to its objects (held until `as` has claimed its own).
struct NamedObject {
    std::string name;
    std::string wire;
    std::vector<ObjectHandle> held;

    /// The handle; TypeError if it is not an H.
    template <class H>
    H as() const {
        msgpack::object_handle unpacked = msgpack::unpack(wire.data(), wire.size());
        try {
            return HandleCodec<H>::from_wire(unpacked.get());
        } catch (const ProtocolError& e) {
            throw TypeError("the Manager's object \"" + name + "\" is not of the type asked for: " + e.what());
        }
    }
};

}  // namespace detail

template <class K, class V>
class DictProxy;

/// d[key]: reads (KeyError when missing), assigns, and adds atomically.
///
///     d["n"] = 1;  d["n"] += 2;  int n = d["n"];
template <class K, class V>
class DictItem {
public:
    DictItem(const DictProxy<K, V>& dict, K key) : dict_(dict), key_(std::move(key)) {}
    /// d[key]; KeyError when missing.
    operator V() const { return dict_.getitem(key_); }  // NOLINT: reads like Python's d[key]
    V get() const { return dict_.getitem(key_); }
    const DictItem& operator=(const V& value) const {
        dict_.set(key_, value);
        return *this;
    }
    /// Atomic: increment(key, delta) (a missing key counts as 0). Returns the new value.
    template <class D>
    V operator+=(const D& delta) const {
        return dict_.increment(key_, delta);
    }
    template <class D>
    V operator-=(const D& delta) const {
        return dict_.increment(key_, -delta);
    }

private:
    const DictProxy<K, V>& dict_;
    K key_;
};

/// Python's DictProxy: a dict in the broker, keys in insertion order.
///
///     auto d = manager.dict<std::string, int>();
///     d.set("a", 1); d["b"] = 2; d.increment("a"); auto a = d.get("a");   // std::optional<int>{2}
template <class K = AnyValue, class V = AnyValue>
class DictProxy {
    static_assert(detail::managed_value_ok<K> && detail::managed_value_ok<V>,
                  "DictProxy<K, V>: K and V must be value types that msgpack can pack");
    using M = detail::managed::Method;

public:
    explicit DictProxy(detail::ObjectHandle handle) : handle_(std::move(handle)) {}

    /// d[key]: reads, assigns (d[key] = v) and increments atomically (d[key] += n).
    DictItem<K, V> operator[](const K& key) const { return DictItem<K, V>(*this, key); }
    /// Python's d[key]; KeyError when missing.
    V getitem(const K& key) const { return call(M::getitem, args().add(key)).template item<V>(0); }
    /// Python's d.get(key): the value, or nothing.
    std::optional<V> get(const K& key) const {
        auto r = call(M::get, args().add(key));
        if (r.result == 0) return std::nullopt;
        return r.template item<V>(0);
    }
    /// Python's d.get(key, default).
    V get(const K& key, const V& default_value) const { return get(key).value_or(default_value); }
    /// Python's d[key] = value.
    void set(const K& key, const V& value) const { (void)call(M::setitem, args().add(key).add(value)); }
    /// Python's del d[key]; KeyError when missing.
    void del(const K& key) const { (void)call(M::delitem, args().add(key)); }
    /// Python's key in d.
    bool contains(const K& key) const { return call(M::contains, args().add(key)).result != 0; }
    /// Python's len(d).
    std::size_t len() const { return static_cast<std::size_t>(call(M::len).result); }
    std::size_t size() const { return len(); }
    std::vector<K> keys() const { return call(M::keys).template all<K>(); }
    std::vector<V> values() const { return call(M::values).template all<V>(); }
    std::vector<std::pair<K, V>> items() const {
        const auto r = call(M::items);
        const auto views = r.items();
        std::vector<std::pair<K, V>> out;
        out.reserve(views.size() / 2);
        for (std::size_t i = 0; i + 1 < views.size(); i += 2)
            out.emplace_back(detail::unpack_item<K>(views[i]), detail::unpack_item<V>(views[i + 1]));
        return out;
    }
    /// Python's d.update(pairs): every pair set in one atomic step (one round trip): the batched
    /// multi-set. Works with a std::map, a std::vector of pairs, any range of pairs.
    template <class Pairs>
    void update(const Pairs& pairs) const {
        detail::ManagedItems its;
        for (const auto& [key, value] : pairs) its.add(static_cast<const K&>(key)).add(static_cast<const V&>(value));
        (void)call(M::update, std::move(its));
    }
    void update(std::initializer_list<std::pair<K, V>> pairs) const {
        update<std::initializer_list<std::pair<K, V>>>(pairs);
    }
    /// Python's d.pop(key); KeyError when missing.
    V pop(const K& key) const { return call(M::pop, args().add(key)).template item<V>(0); }
    /// Python's d.pop(key, default).
    V pop(const K& key, const V& default_value) const {
        auto r = call(M::pop, args().add(key), 1);
        return r.result != 0 ? r.template item<V>(0) : default_value;
    }
    /// Python's d.popitem(): the pair inserted last; KeyError when empty.
    std::pair<K, V> popitem() const {
        auto r = call(M::popitem);
        return {r.template item<K>(0), r.template item<V>(1)};
    }
    /// Python's d.setdefault(key, default): the value there, after setting it to `default_value`
    /// if there was none (atomic).
    V setdefault(const K& key, const V& default_value = V{}) const {
        return call(M::setdefault, args().add(key).add(default_value)).template item<V>(0);
    }
    void clear() const { (void)call(M::clear); }
    /// Python's d.copy(): a snapshot, as a std::map (or any map type that takes pairs).
    template <class Map = std::map<K, V>>
    Map copy() const {
        Map out;
        for (auto& [key, value] : items()) out.emplace(std::move(key), std::move(value));
        return out;
    }

    // ---- beyond Python ----
    /// The batched multi-get: the value of each key (nothing for a missing one), in one round trip.
    std::vector<std::optional<V>> get_many(const std::vector<K>& keys) const {
        detail::ManagedItems its;
        for (const K& key : keys) its.add(key);
        const auto r = call(M::get_many, std::move(its));
        std::vector<std::optional<V>> out;
        out.reserve(keys.size());
        for (std::string_view bytes : r.items()) {
            if (bytes.empty()) {
                out.emplace_back(std::nullopt);
            } else {
                out.emplace_back(detail::unpack_item<V>(bytes));
            }
        }
        return out;
    }
    /// The batched multi-set (update()).
    void set_many(const std::vector<std::pair<K, V>>& pairs) const { update(pairs); }
    /// Atomically adds `delta` to the number at `key` (a missing key counts as 0) and returns the
    /// new value. Integers stay integers (ValueError on overflow); a float on either side makes a
    /// float. TypeError if the value there is not a number.
    template <class D = int>
    V increment(const K& key, const D& delta = 1) const {
        static_assert(std::is_arithmetic_v<D>, "increment: the delta must be a number");
        return call(M::increment, args().add(key).add(delta)).template item<V>(0);
    }
    /// Atomically: if the value at `key` is `expected` (nothing: the key is missing), sets it to
    /// `desired` and returns true; else changes nothing and returns false.
    bool compare_and_set(const K& key, const std::optional<V>& expected, const V& desired) const {
        detail::ManagedItems its;
        its.add(key);
        if (expected) {
            its.add(*expected);
        } else {
            its.add_absent();
        }
        its.add(desired);
        return call(M::compare_and_set, std::move(its)).result != 0;
    }
    /// Sets d[key] = fn(current value or nothing) as one atomic change: fn runs here and is called
    /// again if another process changed the value meanwhile. Returns what was set.
    template <class F>
    V update_with(const K& key, F fn) const {
        for (;;) {
            std::optional<V> current = get(key);
            V next = fn(current);
            if (compare_and_set(key, current, next)) return next;
        }
    }

    bool operator==(const DictProxy& other) const { return handle_.same_object(other.handle_); }
    const detail::ObjectHandle& handle() const { return handle_; }

private:
    static detail::ManagedItems args() { return {}; }
    detail::ManagedReply call(M method, detail::ManagedItems its = {}, std::int64_t a = 0) const {
        return detail::managed_call(handle_, method, std::move(its), a);
    }
    detail::ObjectHandle handle_;
};

/// Python's ListProxy: a list in the broker. Indexes follow Python: negative counts from the end.
/// Slices take std::nullopt for a bound left out (Python's l[:2] is slice(std::nullopt, 2)).
///
///     auto l = manager.list<int>({3, 1, 2});
///     l.append(4); l.sort(); auto first_two = l.slice(0, 2);   // {1, 2}
template <class T = AnyValue>
class ListProxy {
    static_assert(detail::managed_value_ok<T>, "ListProxy<T>: T must be a value type that msgpack can pack");
    using M = detail::managed::Method;
    using Bound = std::optional<std::int64_t>;

public:
    explicit ListProxy(detail::ObjectHandle handle) : handle_(std::move(handle)) {}

    /// l[i]: reads (IndexError outside), assigns (l[i] = v) and increments atomically (l[i] += n).
    class Item {
    public:
        Item(const ListProxy& list, std::int64_t index) : list_(list), index_(index) {}
        operator T() const { return list_.getitem(index_); }  // NOLINT: reads like Python's l[i]
        T get() const { return list_.getitem(index_); }
        const Item& operator=(const T& value) const {
            list_.set(index_, value);
            return *this;
        }
        template <class D>
        T operator+=(const D& delta) const {
            return list_.increment(index_, delta);
        }

    private:
        const ListProxy& list_;
        std::int64_t index_;
    };
    Item operator[](std::int64_t index) const { return Item(*this, index); }

    /// Python's l[i]; IndexError outside the list.
    T getitem(std::int64_t index) const { return call(M::list_getitem, {}, index).template item<T>(0); }
    /// Python's l[i] = value; IndexError outside the list.
    void set(std::int64_t index, const T& value) const { (void)call(M::list_setitem, args().add(value), index); }
    /// Python's del l[i]; IndexError outside the list.
    void del(std::int64_t index) const { (void)call(M::list_delitem, {}, index); }
    std::size_t len() const { return static_cast<std::size_t>(call(M::len).result); }
    std::size_t size() const { return len(); }
    void append(const T& value) const { (void)call(M::append, args().add(value)); }
    /// Python's l.extend(values): in one round trip.
    template <class Range = std::vector<T>>
    void extend(const Range& values) const {
        detail::ManagedItems its;
        for (const auto& value : values) its.add(static_cast<const T&>(value));
        (void)call(M::extend, std::move(its));
    }
    void extend(std::initializer_list<T> values) const { extend<std::initializer_list<T>>(values); }
    /// Python's l.insert(i, value): i is clamped to the list.
    void insert(std::int64_t index, const T& value) const { (void)call(M::insert, args().add(value), index); }
    /// Python's l.index(value, start, stop): the first position; ValueError when absent.
    std::size_t index(const T& value, Bound start = std::nullopt, Bound stop = std::nullopt) const {
        return static_cast<std::size_t>(call(M::index, args().add(value), bound(start), bound(stop)).result);
    }
    std::size_t count(const T& value) const {
        return static_cast<std::size_t>(call(M::count, args().add(value)).result);
    }
    bool contains(const T& value) const { return call(M::contains, args().add(value)).result != 0; }
    /// Python's l.pop(i): removes and returns l[i] (the last by default); IndexError when empty or outside.
    T pop(std::int64_t index = -1) const { return call(M::list_pop, {}, index).template item<T>(0); }
    /// Python's l.remove(value): the first equal one; ValueError when absent.
    void remove(const T& value) const { (void)call(M::remove, args().add(value)); }
    /// Python's l.sort(reverse=...): stable; numbers by value, strings and bytes lexicographically,
    /// lists element by element. TypeError (the list unchanged) for values that do not order.
    void sort(bool reverse = false) const { (void)call(M::sort, {}, reverse ? 1 : 0); }
    void reverse() const { (void)call(M::reverse); }
    void clear() const { (void)call(M::clear); }
    /// Python's l[start:stop] (a copy).
    std::vector<T> slice(Bound start, Bound stop) const {
        return call(M::get_slice, {}, bound(start), bound(stop)).template all<T>();
    }
    /// Python's l[start:stop] = values.
    template <class Range = std::vector<T>>
    void set_slice(Bound start, Bound stop, const Range& values) const {
        detail::ManagedItems its;
        for (const auto& value : values) its.add(static_cast<const T&>(value));
        (void)call(M::set_slice, std::move(its), bound(start), bound(stop));
    }
    /// Python's del l[start:stop].
    void del_slice(Bound start, Bound stop) const { (void)call(M::del_slice, {}, bound(start), bound(stop)); }
    /// Python's list(l): a snapshot.
    std::vector<T> copy() const { return call(M::values).template all<T>(); }

    // ---- beyond Python ----
    /// Atomically adds `delta` to the number at index i and returns the new value (as
    /// DictProxy::increment). IndexError outside, TypeError if it is not a number.
    template <class D = int>
    T increment(std::int64_t index, const D& delta = 1) const {
        static_assert(std::is_arithmetic_v<D>, "increment: the delta must be a number");
        return call(M::list_increment, args().add(delta), index).template item<T>(0);
    }

    bool operator==(const ListProxy& other) const { return handle_.same_object(other.handle_); }
    const detail::ObjectHandle& handle() const { return handle_; }

private:
    static std::int64_t bound(Bound b) { return b ? *b : detail::managed::kNoBound; }
    static detail::ManagedItems args() { return {}; }
    detail::ManagedReply call(M method, detail::ManagedItems its = {}, std::int64_t a = 0, std::int64_t b = 0) const {
        return detail::managed_call(handle_, method, std::move(its), a, b);
    }
    detail::ObjectHandle handle_;
};

/// Python's NamespaceProxy: named fields, each a value of any type.
///
///     auto ns = manager.Namespace();
///     ns.set("x", 10); ns.set("name", "zmp"); int x = ns.get<int>("x");
class NamespaceProxy {
    using M = detail::managed::Method;

public:
    explicit NamespaceProxy(detail::ObjectHandle handle) : handle_(std::move(handle)) {}

    /// Python's ns.name; AttributeError when there is no such field.
    template <class T = AnyValue>
    T get(const std::string& name) const {
        return call(M::getitem, detail::ManagedItems().add(name)).template item<T>(0);
    }
    /// Python's ns.name = value.
    template <class T>
    void set(const std::string& name, const T& value) const {
        (void)call(M::setitem, detail::ManagedItems().add(name).add(value));
    }
    void set(const std::string& name, const char* value) const { set(name, std::string(value)); }
    /// Python's del ns.name; AttributeError when there is no such field.
    void del(const std::string& name) const { (void)call(M::delitem, detail::ManagedItems().add(name)); }
    /// Python's hasattr(ns, name).
    bool has(const std::string& name) const { return call(M::contains, detail::ManagedItems().add(name)).result != 0; }
    /// The fields' names, in the order they were first set.
    std::vector<std::string> names() const { return call(M::keys).template all<std::string>(); }
    /// Atomically adds `delta` to a number field (a missing one counts as 0); the new value.
    template <class T = AnyValue, class D = int>
    T increment(const std::string& name, const D& delta = 1) const {
        static_assert(std::is_arithmetic_v<D>, "increment: the delta must be a number");
        return call(M::increment, detail::ManagedItems().add(name).add(delta)).template item<T>(0);
    }

    bool operator==(const NamespaceProxy& other) const { return handle_.same_object(other.handle_); }
    const detail::ObjectHandle& handle() const { return handle_; }

private:
    detail::ManagedReply call(M method, detail::ManagedItems its = {}) const {
        return detail::managed_call(handle_, method, std::move(its));
    }
    detail::ObjectHandle handle_;
};

/// Python's ValueProxy (manager.Value(typecode, v); the typecode is T here).
///
///     auto v = manager.Value<int>(0);
///     v.set(5); v.increment(2); int now = v.get();   // 7
template <class T>
class ValueProxy {
    static_assert(detail::managed_value_ok<T>, "ValueProxy<T>: T must be a value type that msgpack can pack");
    using M = detail::managed::Method;

public:
    explicit ValueProxy(detail::ObjectHandle handle) : handle_(std::move(handle)) {}

    T get() const { return call(M::value_get).template item<T>(0); }
    /// Python's v.value.
    T value() const { return get(); }
    void set(const T& value) const { (void)call(M::value_set, detail::ManagedItems().add(value)); }
    /// Atomically adds `delta` and returns the new value (as DictProxy::increment).
    template <class D = int>
    T increment(const D& delta = 1) const {
        static_assert(std::is_arithmetic_v<D>, "increment: the delta must be a number");
        return call(M::value_increment, detail::ManagedItems().add(delta)).template item<T>(0);
    }
    /// Atomically: sets `desired` if the value is `expected`; true if it did.
    bool compare_and_set(const T& expected, const T& desired) const {
        return call(M::value_compare_and_set, detail::ManagedItems().add(expected).add(desired)).result != 0;
    }

    bool operator==(const ValueProxy& other) const { return handle_.same_object(other.handle_); }
    const detail::ObjectHandle& handle() const { return handle_; }

private:
    detail::ManagedReply call(M method, detail::ManagedItems its = {}) const {
        return detail::managed_call(handle_, method, std::move(its));
    }
    detail::ObjectHandle handle_;
};

/// Python's multiprocessing.Manager() (a SyncManager, started). Not copyable: the process that
/// makes it owns it; its proxies are what travels.
///
///     zmp::Manager manager;
///     auto l = manager.list<int>();  /* children: */ l.append(i);   /* later: */ manager.shutdown();
class Manager {
public:
    /// A manager in this run's broker (started if need be). ProcessError if there is none.
    Manager();
    /// shutdown(), in the process that made it (a forked child's copy does nothing).
    ~Manager();
    Manager(Manager&& other) noexcept;
    Manager& operator=(Manager&&) = delete;
    Manager(const Manager&) = delete;
    Manager& operator=(const Manager&) = delete;

    /// A new, empty dict; or one holding `initial`'s pairs.
    template <class K = AnyValue, class V = AnyValue>
    DictProxy<K, V> dict() const {
        return DictProxy<K, V>(create(detail::ManagedKind::dict));
    }
    template <class K, class V>
    DictProxy<K, V> dict(const std::map<K, V>& initial) const {
        DictProxy<K, V> d(create(detail::ManagedKind::dict));
        if (!initial.empty()) d.update(initial);
        return d;
    }
    /// A new list, holding `initial`.
    template <class T = AnyValue>
    ListProxy<T> list(const std::vector<T>& initial = {}) const {
        ListProxy<T> l(create(detail::ManagedKind::list));
        if (!initial.empty()) l.extend(initial);
        return l;
    }
    /// A new Namespace, without fields.
    NamespaceProxy Namespace() const { return NamespaceProxy(create(detail::ManagedKind::namespace_)); }
    /// A new Value holding `initial`.
    template <class T>
    ValueProxy<T> Value(const T& initial = T{}) const {
        ValueProxy<T> v(create(detail::ManagedKind::value));
        v.set(initial);
        return v;
    }

    // The run's own shared objects (queue.hpp, sync.hpp), as Python's SyncManager offers them.
    template <class T = AnyValue>
    zmp::Queue<T> Queue(std::int64_t maxsize = 0) const {
        check_running();
        return zmp::Queue<T>(maxsize);
    }
    template <class T = AnyValue>
    zmp::JoinableQueue<T> JoinableQueue(std::int64_t maxsize = 0) const {
        check_running();
        return zmp::JoinableQueue<T>(maxsize);
    }
    zmp::Lock Lock() const;
    zmp::RLock RLock() const;
    zmp::Semaphore Semaphore(int value = 1) const;
    zmp::BoundedSemaphore BoundedSemaphore(int value = 1) const;
    zmp::Event Event() const;
    zmp::Condition Condition() const;
    zmp::Barrier Barrier(int parties) const;

    /// Empties every dict, list, Namespace and Value this manager made; their proxies raise
    /// ProcessError from then on, in every process. Calling it again does nothing. For a Manager
    /// that connected to an address: lets go of it here; the server's manager runs on.
    void shutdown();

    // ---- a manager on an address -------------------------------------------------------------

    /// Python's BaseManager(address, authkey).start(): this process's broker also serves tcp
    /// `address` ("tcp://*:50000"; port 0 picks one) with CURVE keys derived from `authkey`, and
    /// the new Manager is the one served there. Call it before the first object or child is made
    /// (zmp::serve's rule). ValueError for an address that is not tcp:// or a broker that started
    /// already, or if this broker serves another Manager; OSError if it cannot bind.
    ///
    ///     auto manager = zmp::Manager::serve("tcp://*:50000", key);
    static Manager serve(const std::string& address, const Authkey& authkey = current_authkey());
    /// Python's BaseManager(address, authkey).connect(): joins the manager served at tcp
    /// `address` (zmp::connect, waiting up to `timeout` for it to answer). AuthenticationError if it
    /// holds another key; ProcessError if nobody answers in time; ValueError if the broker there
    /// serves no Manager. Objects this program makes through it live at that broker.
    ///
    ///     auto manager = zmp::Manager::connect("tcp://server:50000", key);
    static Manager connect(const std::string& address, const Authkey& authkey,
                           std::chrono::milliseconds timeout = std::chrono::seconds(30));
    /// The tcp endpoint bound (serve) or joined (connect), with its port; empty otherwise.
    const std::string& address() const { return address_; }

    /// Names `object` (any handle: a proxy, Queue, Lock, Event...) for every program of this
    /// manager; a name taken already is given the new object. The manager keeps the object alive
    /// until it shuts down (or the name is removed). ValueError for an object of another broker.
    template <class H>
    void publish(const std::string& name, const H& object) const {
        static_assert(detail::CodecHandle<H>, "publish: the object must be a zmp handle (a proxy, a Queue, a Lock...)");
        detail::with_packed_item(object, [&](std::string_view wire) { (void)bind(name, wire, true); });
    }
    /// The object named `name`, as an H. KeyError if there is none; TypeError if it is not an H.
    template <class H>
    H get(const std::string& name) const {
        return lookup(name).template as<H>();
    }
    /// The object named `name`; if there is none yet, a new one (made as the makers above make it:
    /// an empty dict, a Value holding T{}, a Queue without bound...) published under that name.
    /// Programs that race to make one all get the same. TypeError if it is not an H.
    template <class H>
    H get_or_create(const std::string& name) const {
        if (auto found = find(name)) return found->template as<H>();
        H fresh = make(std::type_identity<H>());
        std::optional<detail::NamedObject> taken;
        detail::with_packed_item(fresh, [&](std::string_view wire) { taken = bind(name, wire, false); });
        if (taken) return taken->template as<H>();
        return fresh;
    }
    /// Whether `name` names an object.
    bool contains(const std::string& name) const { return find(name).has_value(); }
    /// The names, sorted.
    std::vector<std::string> names() const;
    /// Removes a name (the object lives on while handles of it do); KeyError if there is none.
    void unpublish(const std::string& name) const;

    const detail::ObjectHandle& handle() const { return handle_; }

private:
    Manager(detail::ObjectHandle handle, std::string address, bool connected);
    void check_running() const;
    detail::ObjectHandle create(detail::ManagedKind kind) const;
    detail::NamedObject lookup(const std::string& name) const;
    std::optional<detail::NamedObject> find(const std::string& name) const;
    /// Binds `name` to the handle packed as `wire`; when the name is taken and not `replace`d:
    /// the object it names.
    std::optional<detail::NamedObject> bind(const std::string& name, std::string_view wire, bool replace) const;

    template <class K, class V>
    DictProxy<K, V> make(std::type_identity<DictProxy<K, V>>) const {
        return dict<K, V>();
    }
    template <class T>
    ListProxy<T> make(std::type_identity<ListProxy<T>>) const {
        return list<T>();
    }
    NamespaceProxy make(std::type_identity<NamespaceProxy>) const { return Namespace(); }
    template <class T>
    ValueProxy<T> make(std::type_identity<ValueProxy<T>>) const {
        return Value<T>();
    }
    template <class H>
    H make(std::type_identity<H>) const {
        check_running();
        return H();
    }

    detail::ObjectHandle handle_;
    std::string address_;
    int owner_pid_ = 0;
    bool connected_ = false;
    bool shut_down_ = false;
};

/// Python's multiprocessing.managers.SharedMemoryManager: segments made through it are unlinked
/// at shutdown() (or by the destructor, in the process that made it). Not copyable; call its
/// makers in that process (the segments themselves travel anywhere, by name).
///
///     zmp::SharedMemoryManager smm;
///     zmp::SharedMemory shm = smm.SharedMemory(4096);   // gone from /dev/shm at smm.shutdown()
class SharedMemoryManager {
public:
    SharedMemoryManager();
    ~SharedMemoryManager();
    SharedMemoryManager(const SharedMemoryManager&) = delete;
    SharedMemoryManager& operator=(const SharedMemoryManager&) = delete;

    /// A new zero-filled segment of `size` bytes (SharedMemory(nullopt, true, size)). ValueError
    /// after shutdown(), and as SharedMemory for a bad size.
    zmp::SharedMemory SharedMemory(std::int64_t size);
    /// A new ShareableList holding `sequence`. ValueError after shutdown().
    zmp::ShareableList ShareableList(const std::vector<ShareableValue>& sequence);
    /// Unlinks every segment made through this manager that is still there; later makers raise
    /// ValueError. Calling it again does nothing.
    void shutdown();

private:
    void check_running() const;
    mutable std::mutex mutex_;
    std::vector<std::string> names_;
    int owner_pid_ = 0;
    bool shut_down_ = false;
};

namespace detail {

template <class K, class V>
struct HandleCodec<DictProxy<K, V>> {
    static ObjectWire to_wire(const DictProxy<K, V>& d) { return managed_to_wire(d.handle()); }
    static DictProxy<K, V> from_wire(const msgpack::object& obj) {
        return DictProxy<K, V>(managed_from_wire(obj, ManagedKind::dict));
    }
};
template <class T>
struct HandleCodec<ListProxy<T>> {
    static ObjectWire to_wire(const ListProxy<T>& l) { return managed_to_wire(l.handle()); }
    static ListProxy<T> from_wire(const msgpack::object& obj) {
        return ListProxy<T>(managed_from_wire(obj, ManagedKind::list));
    }
};
template <>
struct HandleCodec<NamespaceProxy> {
    static ObjectWire to_wire(const NamespaceProxy& ns) { return managed_to_wire(ns.handle()); }
    static NamespaceProxy from_wire(const msgpack::object& obj) {
        return NamespaceProxy(managed_from_wire(obj, ManagedKind::namespace_));
    }
};
template <class T>
struct HandleCodec<ValueProxy<T>> {
    static ObjectWire to_wire(const ValueProxy<T>& v) { return managed_to_wire(v.handle()); }
    static ValueProxy<T> from_wire(const msgpack::object& obj) {
        return ValueProxy<T>(managed_from_wire(obj, ManagedKind::value));
    }
};

}  // namespace detail
}  // namespace zmp
