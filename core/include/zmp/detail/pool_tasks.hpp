#pragma once
// How zmp::Pool's templates turn a task and its arguments into a Job: what a task returns and
// takes, how a void result is stored, and the encoding of argument tuples into chunks (msgpack
// arrays of argument tuples, read lazily from the input as the engine asks).
//
// Not a public API: zmp/pool.hpp's templates need it, so it is installed with the headers.

#include <msgpack.hpp>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <ranges>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#include "zmp/detail/pool_job.hpp"
#include "zmp/function.hpp"
#include "zmp/pipe.hpp"

namespace zmp::detail {

template <class F>
using function_pointer_t = decltype(+std::declval<std::decay_t<F>&>());
template <class F>
using result_of_t = typename function_traits<function_pointer_t<F>>::result;
template <class F>
using params_of_t = typename function_traits<function_pointer_t<F>>::args;

/// What a void task's result is stored as (it travels as nil).
struct Nothing {};
template <class T>
using stored_t = std::conditional_t<std::is_void_v<T>, Nothing, T>;

template <class F>
TaskFunction task_function(F& f) {
    auto pointer = +f;
    return {reinterpret_cast<const void*>(pointer), trampoline_for<decltype(pointer)>()};
}

/// Packs one argument tuple (converted to the function's parameter types) onto `out`.
template <class Params, class... Args>
void pack_call(msgpack::packer<msgpack::sbuffer>& out, Args&&... args) {
    out.pack(Params(std::forward<Args>(args)...));
}

template <class Params, class Element, bool Star>
void pack_element(msgpack::packer<msgpack::sbuffer>& out, Element&& element) {
    if constexpr (Star) {
        std::apply([&](auto&&... parts) { pack_call<Params>(out, std::forward<decltype(parts)>(parts)...); },
                   std::forward<Element>(element));
    } else {
        pack_call<Params>(out, std::forward<Element>(element));
    }
}

/// One call's chunk (apply_async): a one-element array, with the descriptors of the Connections
/// among the arguments. Serialization errors surface here, in the caller.
template <class Params, class... Args>
EncodedChunk encode_call(Args&&... args) {
    msgpack::sbuffer buffer;
    msgpack::packer<msgpack::sbuffer> out(buffer);
    FdCapture capture;
    out.pack_array(1);
    pack_call<Params>(out, std::forward<Args>(args)...);
    EncodedChunk chunk;
    chunk.args.assign(buffer.data(), buffer.size());
    chunk.count = 1;
    chunk.fds = owned(capture.take());
    return chunk;
}

/// The argument tuple of an initializer, with its descriptors.
template <class Params, class... Args>
std::pair<std::string, std::shared_ptr<OwnedFds>> encode_arguments(Args&&... args) {
    msgpack::sbuffer buffer;
    msgpack::packer<msgpack::sbuffer> out(buffer);
    FdCapture capture;
    pack_call<Params>(out, std::forward<Args>(args)...);
    return {std::string(buffer.data(), buffer.size()), owned(capture.take())};
}

/// A chunk source that yields `chunk` once.
inline std::function<bool(EncodedChunk&)> single_chunk(EncodedChunk chunk) {
    auto taken = std::make_shared<bool>(false);
    return [chunk = std::move(chunk), taken](EncodedChunk& out) mutable {
        if (*taken) return false;
        *taken = true;
        out = std::move(chunk);
        return true;
    };
}

/// A lazy chunk source over a range: pulls `chunksize` elements per chunk as the engine asks.
/// The range is held as std::views::all would hold it: a view or an rvalue by value, a container
/// passed as an lvalue by address (its owner keeps it alive). std::views itself is not used, as
/// clang 14 cannot compile libstdc++ 12's views.
template <class Params, bool Star, class Range>
std::function<bool(EncodedChunk&)> chunks_of(Range&& input, std::size_t chunksize) {
    constexpr bool by_value = std::ranges::view<std::remove_cvref_t<Range>> || !std::is_lvalue_reference_v<Range>;
    using Input = std::conditional_t<by_value, std::remove_cvref_t<Range>, std::remove_reference_t<Range>>;
    struct State {
        std::conditional_t<by_value, Input, Input*> held;
        std::ranges::iterator_t<Input> it;
        std::size_t index = 0;
        bool started = false;
        Input& range() {
            if constexpr (by_value)
                return held;
            else
                return *held;
        }
    };
    std::shared_ptr<State> state;
    if constexpr (by_value)
        state = std::make_shared<State>(State{std::forward<Range>(input), {}, 0, false});
    else
        state = std::make_shared<State>(State{&input, {}, 0, false});
    return [state, chunksize](EncodedChunk& chunk) {
        if (!state->started) {
            state->it = std::ranges::begin(state->range());
            state->started = true;
        }
        if (state->it == std::ranges::end(state->range())) return false;
        msgpack::sbuffer buffer(64 * chunksize + 16);
        msgpack::packer<msgpack::sbuffer> out(buffer);
        FdCapture capture;  // Connections among the arguments travel with the chunk
        // The count is known only at the end; an array32 header keeps its room fixed.
        const char header[5] = {static_cast<char>(0xdd), 0, 0, 0, 0};
        buffer.write(header, sizeof header);
        std::uint32_t n = 0;
        chunk.first = state->index;
        while (n < chunksize && state->it != std::ranges::end(state->range())) {
            pack_element<Params, decltype(*state->it), Star>(out, *state->it);
            ++state->it;
            ++n;
        }
        const std::uint32_t big_endian = __builtin_bswap32(n);
        std::memcpy(buffer.data() + 1, &big_endian, sizeof big_endian);
        chunk.args.assign(buffer.data(), buffer.size());
        chunk.fds = owned(capture.take());
        chunk.count = n;
        state->index += n;
        return true;
    };
}

}  // namespace zmp::detail

template <>
struct zmp::is_packable<zmp::detail::Nothing> : std::true_type {};

// A void task's result: nil on the wire, Nothing in the result's storage.
namespace msgpack {
MSGPACK_API_VERSION_NAMESPACE(MSGPACK_DEFAULT_API_NS) {
    namespace adaptor {
    template <>
    struct convert<zmp::detail::Nothing> {
        const msgpack::object& operator()(const msgpack::object& obj, zmp::detail::Nothing&) const { return obj; }
    };
    template <>
    struct pack<zmp::detail::Nothing> {
        template <class Stream>
        packer<Stream>& operator()(packer<Stream>& out, const zmp::detail::Nothing&) const {
            out.pack_nil();
            return out;
        }
    };
    }  // namespace adaptor
}
}  // namespace msgpack
