#pragma once
// Function identity: how a callable reaches a process that is not a copy of this one.
//
// Under the fork start method a child is a copy of its parent, so any callable works. A child
// made by spawn or forkserver is a fresh image of the same binary: it finds a plain function or
// a capture-free lambda again by the function's place in its loaded module (no registration
// needed), and receives the arguments as msgpack. A function registered by name with
// ZMP_REGISTER is also found by that name, which is what other binaries (remote workers) use.
//
//     void work(int n, std::string s);
//     ZMP_REGISTER(work);                     // optional within one binary
//     zmp::Process p(work, 7, "seven");       // travels under every start method
//
// What cannot travel: lambdas with captures and other stateful callables, generic lambdas,
// member functions, and arguments without a msgpack adaptor. They work under fork; under spawn
// and forkserver start() raises zmp::ValueError saying why. Calls whose start method is fixed
// at compile time (the Pool's tasks) reject them at compile time instead (zmp::travels).
//
// Threading: the registry is filled during static initialisation and read-only afterwards.

#include <msgpack.hpp>

#include <array>
#include <cstdint>
#include <deque>
#include <list>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <vector>
#include <type_traits>
#include <utility>

#include "zmp/errors.hpp"
#include "zmp/transport/codec.hpp"

namespace zmp {

/// Whether values of T travel as msgpack: arithmetic types, std::string, the standard
/// containers, std::optional, pairs and tuples of such types, types with MSGPACK_DEFINE, and zmp's
/// handles. msgpack-cxx cannot tell (its adaptors fail inside their bodies), so a type with a
/// hand-written non-intrusive adaptor says so by specialising this trait:
///     template <> struct zmp::is_packable<MyType> : std::true_type {};
template <class T, class = void>
struct is_packable : std::false_type {};

template <class T>
struct is_packable<
    T, std::void_t<decltype(std::declval<const T&>().msgpack_pack(std::declval<msgpack::packer<msgpack::sbuffer>&>()))>>
    : std::true_type {};

template <class T>
inline constexpr bool is_packable_v = is_packable<std::remove_cv_t<T>>::value;

namespace detail {
template <class... T>
struct all_packable : std::bool_constant<(is_packable_v<T> && ...)> {};
}  // namespace detail

template <class T>
requires std::is_arithmetic_v<T>
struct is_packable<T> : std::true_type {
};
template <>
struct is_packable<std::string> : std::true_type {};
template <class T>
struct is_packable<std::vector<T>> : detail::all_packable<T> {};
template <class T>
struct is_packable<std::list<T>> : detail::all_packable<T> {};
template <class T>
struct is_packable<std::deque<T>> : detail::all_packable<T> {};
template <class T>
struct is_packable<std::set<T>> : detail::all_packable<T> {};
template <class T>
struct is_packable<std::unordered_set<T>> : detail::all_packable<T> {};
template <class T, std::size_t N>
struct is_packable<std::array<T, N>> : detail::all_packable<T> {};
template <class T>
struct is_packable<std::optional<T>> : detail::all_packable<T> {};
template <class K, class V>
struct is_packable<std::map<K, V>> : detail::all_packable<K, V> {};
template <class K, class V>
struct is_packable<std::unordered_map<K, V>> : detail::all_packable<K, V> {};
template <class A, class B>
struct is_packable<std::pair<A, B>> : detail::all_packable<A, B> {};
template <class... T>
struct is_packable<std::tuple<T...>> : detail::all_packable<T...> {};

namespace detail {

/// Calls `fn` (a function pointer of a known type) with arguments decoded from `args` (a msgpack
/// array) and, if `result` is given, packs its return value there (nil for void).
using Trampoline = void (*)(const void* fn, const msgpack::object& args, msgpack::packer<msgpack::sbuffer>* result);

template <class T>
struct function_traits;
template <class R, class... P>
struct function_traits<R (*)(P...)> {
    using result = R;
    using args = std::tuple<std::decay_t<P>...>;
};
template <class R, class... P>
struct function_traits<R (*)(P...) noexcept> : function_traits<R (*)(P...)> {};

template <class F>
concept plain_function_like = requires(F f) {
    {+f};
    requires std::is_pointer_v<decltype(+f)> && std::is_function_v<std::remove_pointer_t<decltype(+f)>>;
};

template <class Fn>
void call_with_packed_args(const void* fn, const msgpack::object& obj, msgpack::packer<msgpack::sbuffer>* result) {
    using Traits = function_traits<Fn>;
    typename Traits::args args = transport::convert<typename Traits::args>(obj);
    auto target = reinterpret_cast<Fn>(const_cast<void*>(fn));
    if constexpr (std::is_void_v<typename Traits::result>) {
        std::apply(target, args);
        if (result) result->pack_nil();
    } else {
        auto value = std::apply(target, args);
        if (result) result->pack(value);
    }
}

/// The trampoline for function pointer type Fn.
template <class Fn>
Trampoline trampoline_for() {
    return &call_with_packed_args<Fn>;
}

/// Where a piece of code lives: a loaded module (empty name: the main executable) and an offset.
struct CodeAddress {
    std::string module;
    std::uint64_t offset = 0;
    MSGPACK_DEFINE(module, offset)
};

/// A function and its trampoline, as they travel: by registered name when there is one, else by
/// their places in their modules.
struct FunctionId {
    std::string name;  // empty: not registered
    CodeAddress function;
    CodeAddress trampoline;
    MSGPACK_DEFINE(name, function, trampoline)
};

/// Identifies `fn` (with trampoline `tramp`). Throws ValueError if it is not in a loaded module.
FunctionId identify(const void* fn, Trampoline tramp);
/// The function and trampoline a FunctionId stands for in this process. ValueError if absent.
std::pair<const void*, Trampoline> resolve(const FunctionId& id);

void register_function(const char* name, const void* fn, Trampoline tramp);

/// The function registered under `name` in this process, or nullopt: how a worker built from
/// other sources finds a task (it must never guess at an address in a binary it is not).
std::optional<std::pair<const void*, Trampoline>> resolve_registered(const std::string& name);

/// This program's build: the GNU build id of the main executable in hex (a hash of the
/// executable's bytes when it has none). Two processes whose build ids match run the same code,
/// so functions may travel between them by address.
const std::string& this_build_id();

struct Registration {
    template <class F>
    Registration(const char* name, F* fn) {
        register_function(name, reinterpret_cast<const void*>(fn), trampoline_for<F*>());
    }
};

}  // namespace detail

/// Registers `fn` as the pool task (or Process target) `name`: a worker built from other sources
/// that registers the same name runs it (zmp/worker.hpp). Same as ZMP_TASK, at run time; call it
/// before the worker joins or the task is submitted. Threading: any thread.
///     zmp::register_task("count_primes", count_primes);
template <class F>
void register_task(const char* name, F* fn) {
    detail::register_function(name, reinterpret_cast<const void*>(fn), detail::trampoline_for<F*>());
}

/// True if a call f(args...) can be sent to a spawned process: F is a plain function or a
/// capture-free lambda, and every parameter type has msgpack adaptors.
template <class F, class... Args>
inline constexpr bool travels = [] {
    if constexpr (detail::plain_function_like<std::decay_t<F>>) {
        using Fn = decltype(+std::declval<std::decay_t<F>&>());
        using Params = typename detail::function_traits<Fn>::args;
        return is_packable_v<Params> && std::is_constructible_v<Params, Args&...>;
    } else {
        return false;
    }
}();

}  // namespace zmp

/// Registers a function under its own name (or `name` with ZMP_REGISTER_AS) so that any binary
/// that registers the same name can run it. Use at namespace scope.
#define ZMP_REGISTER(fn) ZMP_REGISTER_AS(#fn, fn)
#define ZMP_REGISTER_AS(name, fn) \
    static const ::zmp::detail::Registration ZMP_REGISTER_CAT(zmp_registration_, __LINE__)(name, &(fn))
/// ZMP_TASK(name, fn): registers `fn` as the task `name` (a string), at namespace scope; tasks of
/// a Pool travel to joined workers of other builds by that name (zmp/worker.hpp).
#define ZMP_TASK(name, fn) ZMP_REGISTER_AS(name, fn)
#define ZMP_REGISTER_CAT2(a, b) a##b
#define ZMP_REGISTER_CAT(a, b) ZMP_REGISTER_CAT2(a, b)
