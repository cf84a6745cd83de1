#pragma once
// The wire of the Manager's objects (zmp/manager.hpp): the broker serves them
// (core/src/broker/objects/managed.cpp) through one op, MANAGER_CALL; the proxies' templates
// name the methods. Internal: public only because templates need it.
//
//   request  MANAGER_CALL [method, item count, int...] + items
//   reply    ok [outcome, result, item count] + items, text: the outcome's message
//
// Items are a batch (protocol.hpp: append_item), each one msgpack value: keys, values, results.
// An empty item (no msgpack value has 0 bytes) stands for "absent": a missing key in get_many's
// answer, "the key must be absent" as compare_and_set's expected value.
//
// An outcome other than ok is the referent's own exception (a missing key, an index out of
// range), which the proxy raises with its type, as Python re-raises the referent's exception; the
// object is unchanged. A request that is malformed (items that are not exactly one msgpack value
// each, a wrong count, a method the object does not have) is refused with protocol_error, like
// any request of the broker; the object is unchanged too.

#include <cstdint>

namespace zmp::detail::managed {

enum class Method : std::uint8_t {
    // The manager: [] -> []
    attach_owner = 1,  // the calling process made the manager: its death shuts the manager down
    shutdown,          // every object of the manager is emptied; their calls raise from now on
    // A dict or Namespace (Namespace: fields by name). Items are keys (k) and values (v).
    getitem,          // [k] -> [v]; KeyError
    get,              // [k] -> [found] + [v] when found
    setitem,          // [k, v] -> []
    delitem,          // [k] -> []; KeyError
    contains,         // [k] -> [found]
    len,              // [] -> [length]
    keys,             // [] -> k...
    values,           // [] -> v...
    items,            // [] -> k, v, k, v...
    update,           // [k, v, k, v...] -> []
    pop,              // (missing ok) [k] -> [found] + [v]; KeyError unless missing ok
    popitem,          // [] -> [k, v]; KeyError when empty (the last inserted goes first)
    setdefault,       // [k, v] -> [v now there]
    clear,            // [] -> []
    get_many,         // [k...] -> v or an empty item, for each k
    increment,        // [k, delta] -> [new value]: a missing key counts as 0; TypeError unless numbers
    compare_and_set,  // [k, expected or empty, desired] -> [swapped]
    // A list: indexes are int arguments (Python's rules: negative counts from the end).
    list_getitem,    // (index) [] -> [v]; IndexError
    list_setitem,    // (index) [v] -> []; IndexError
    list_delitem,    // (index) [] -> []; IndexError
    append,          // [v] -> []
    extend,          // [v...] -> []
    insert,          // (index) [v] -> []
    index,           // (start, stop) [v] -> [position]; ValueError when absent
    count,           // [v] -> [n]
    list_pop,        // (index) [] -> [v]; IndexError
    remove,          // [v] -> []; ValueError when absent
    sort,            // (reverse) [] -> []; TypeError for values that do not order
    reverse,         // [] -> []
    get_slice,       // (start, stop) [] -> v...
    set_slice,       // (start, stop) [v...] -> []
    del_slice,       // (start, stop) [] -> []
    list_increment,  // (index) [delta] -> [new value]; IndexError, TypeError
    // A Value: one value. [] -> [v]; [v] -> []; [delta] -> [new]; [expected, desired] -> [swapped]
    value_get,
    value_set,
    value_increment,
    value_compare_and_set,
    // A manager's named objects (a manager served on an address). A name's item is its handle's
    // wire (its tokens 0), and the ids of the objects in it, a msgpack array; the manager keeps a
    // reference to each of them until it shuts down.
    publish,      // [] -> []: this manager is the one its broker serves (CREATE [manager, 1] joins it)
    name_get,     // [name] -> [wire]; KeyError. The caller gets a reference to each object of the wire
    name_bind,    // (replace) [name, wire, ids] -> [bound]: 1, or 0 and [wire] (the name's, when it is
                  // taken and not replaced; the caller gets references as by name_get)
    name_remove,  // [name] -> []; KeyError
    name_list,    // [] -> name...
};
inline constexpr std::uint8_t kLastMethod = static_cast<std::uint8_t>(Method::name_list);

enum class Outcome : std::int64_t {
    ok = 0,
    key_error,        // KeyError: a missing key
    index_error,      // IndexError: an index out of range, pop from an empty list
    value_error,      // ValueError: index() or remove() of a value the list does not hold
    type_error,       // TypeError: increment of a value that is not a number, sort of values that do not order
    attribute_error,  // AttributeError: a Namespace field that is not there
    shut_down,        // the Manager that made the object has shut down
};
inline constexpr std::int64_t kLastOutcome = static_cast<std::int64_t>(Outcome::shut_down);

/// A slice bound left out (Python's None).
inline constexpr std::int64_t kNoBound = INT64_MIN;

}  // namespace zmp::detail::managed
