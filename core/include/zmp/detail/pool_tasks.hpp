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

/// What a callable that cannot be a pool task "returns" in the signatures of Pool's entry
/// points, so that a call with one reaches the static_assert that says why (instead of failing in
/// the signature with a message about operator+).
struct NotATask {};
template <class F, bool = plain_function_like<std::decay_t<F>>>
struct task_result {
    using type = NotATask;
};
template <class F>
struct task_result<F, true> {
    using type = result_of_t<F>;
};
template <class F>
using task_result_t = typename task_result<F>::type;
template <class F>
using task_stored_t = stored_t<task_result_t<F>>;

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

/// A range read lazily, on the engine's thread, a few elements at a time: begin() is taken on
/// first use. The range is held as std::views::all would hold it: a view or an rvalue by value, a
/// container passed as an lvalue by address (its owner keeps it alive). std::views itself is not
/// used, as clang 14 cannot compile libstdc++ 12's views.
template <class Range>
class RangeCursor {
    static constexpr bool by_value =
        std::ranges::view<std::remove_cvref_t<Range>> || !std::is_lvalue_reference_v<Range>;
    using Input = std::conditional_t<by_value, std::remove_cvref_t<Range>, std::remove_reference_t<Range>>;

public:
    explicit RangeCursor(Range&& input) : held_(hold(std::forward<Range>(input))) {}
    /// True once every element has been read.
    bool at_end() {
        if (!started_) {
            it = std::ranges::begin(range());
            started_ = true;
        }
        return it == std::ranges::end(range());
    }

    std::ranges::iterator_t<Input> it{};
    std::size_t index = 0;  // of the element `it` stands on

private:
    using Held = std::conditional_t<by_value, Input, Input*>;
    static Held hold(Range&& input) {
        if constexpr (by_value)
            return Held(std::forward<Range>(input));
        else
            return &input;
    }
    Input& range() {
        if constexpr (by_value)
            return held_;
        else
            return *held_;
    }
    Held held_;
    bool started_ = false;
};

template <class Range>
std::shared_ptr<RangeCursor<Range>> make_cursor(Range&& input) {
    return std::make_shared<RangeCursor<Range>>(std::forward<Range>(input));
}

/// A lazy chunk source over a range: pulls `chunksize` elements per chunk as the engine asks.
template <class Params, bool Star, class Range>
std::function<bool(EncodedChunk&)> chunks_of(Range&& input, std::size_t chunksize) {
    auto cursor = make_cursor(std::forward<Range>(input));
    return [cursor, chunksize](EncodedChunk& chunk) {
        if (cursor->at_end()) return false;
        msgpack::sbuffer buffer(64 * chunksize + 16);
        msgpack::packer<msgpack::sbuffer> out(buffer);
        FdCapture capture;  // Connections among the arguments travel with the chunk
        // The count is known only at the end; an array32 header keeps its room fixed.
        const char header[5] = {static_cast<char>(0xdd), 0, 0, 0, 0};
        buffer.write(header, sizeof header);
        std::uint32_t n = 0;
        chunk.first = cursor->index;
        while (n < chunksize && !cursor->at_end()) {
            pack_element<Params, decltype(*cursor->it), Star>(out, *cursor->it);
            ++cursor->it;
            ++n;
        }
        const std::uint32_t big_endian = __builtin_bswap32(n);
        std::memcpy(buffer.data() + 1, &big_endian, sizeof big_endian);
        chunk.args.assign(buffer.data(), buffer.size());
        chunk.fds = owned(capture.take());
        chunk.count = n;
        cursor->index += n;
        return true;
    };
}

}  // namespace zmp::detail
