#pragma once
// How zmp::ThreadPool's templates turn a callable and its inputs into a ThreadJob: each chunk is
// read from the input under the engine's lock (elements copied or moved out, since the work runs
// later on another thread) and becomes a closure that calls the task on every element and
// delivers the values, or the chunk's first exception, to the typed result.
//
// Not a public API: zmp/thread_pool.hpp's templates need it, so it is installed with the headers.

#include <cstddef>
#include <exception>
#include <functional>
#include <memory>
#include <ranges>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "zmp/detail/pool_job.hpp"
#include "zmp/detail/pool_tasks.hpp"

namespace zmp::detail {

/// What a call of F on an element returns (Star: the element is a tuple of arguments).
template <class F, class Element, bool Star>
struct thread_call_result {
    using type = std::invoke_result_t<F&, Element&&>;
};
template <class F, class Element>
struct thread_call_result<F, Element, true> {
    using type = decltype(std::apply(std::declval<F&>(), std::declval<Element&&>()));
};
template <class F, class Element, bool Star>
using thread_call_result_t = typename thread_call_result<F, Element, Star>::type;

/// Calls f on one element (consumed) and returns the value as the result stores it.
template <bool Star, class Stored, class F, class Element>
Stored call_stored(F& f, Element&& element) {
    auto call = [&]() -> decltype(auto) {
        if constexpr (Star)
            return std::apply(f, std::forward<Element>(element));
        else
            return std::invoke(f, std::forward<Element>(element));
    };
    if constexpr (std::is_same_v<Stored, Nothing> && std::is_void_v<decltype(call())>) {
        call();
        return Nothing{};
    } else {
        return call();
    }
}

/// The work of one chunk: every element through f, then the values (or the chunk's first
/// exception, as Python's chunks fail) to `result`. Never throws.
template <bool Star, class F, class Element, class Result>
void run_chunk(F& f, std::vector<Element>& items, std::size_t first, Result& result) {
    using Stored = typename Result::value_type;
    std::vector<Stored> values;
    try {
        values.reserve(items.size());
        for (auto& item : items) values.push_back(call_stored<Star, Stored>(f, std::move(item)));
    } catch (...) {
        result.on_chunk_failed(first, items.size(), std::current_exception());
        return;
    }
    result.put_values(first, std::move(values));
}

/// A lazy chunk source over a range for a ThreadPool job.
template <bool Star, class F, class Range, class Result>
std::function<std::function<void()>(std::size_t&)> thread_chunks_of(std::shared_ptr<F> f, Range&& input,
                                                                    std::size_t chunksize,
                                                                    std::shared_ptr<Result> result) {
    using Element = std::ranges::range_value_t<Range>;
    auto cursor = make_cursor(std::forward<Range>(input));
    return
        [cursor, f = std::move(f), chunksize, result = std::move(result)](std::size_t& count) -> std::function<void()> {
            if (cursor->at_end()) return {};
            auto items = std::make_shared<std::vector<Element>>();
            while (items->size() < chunksize && !cursor->at_end()) {
                items->push_back(*cursor->it);
                ++cursor->it;
            }
            const std::size_t first = cursor->index;
            cursor->index += items->size();
            count = items->size();
            return [f, items, first, result] { run_chunk<Star>(*f, *items, first, *result); };
        };
}

/// The source of a job of one call: f(args...) once.
template <class F, class Args, class Result>
std::function<std::function<void()>(std::size_t&)> thread_call(std::shared_ptr<F> f, Args args,
                                                               std::shared_ptr<Result> result) {
    auto items = std::make_shared<std::vector<Args>>();
    items->push_back(std::move(args));
    auto taken = std::make_shared<bool>(false);
    return [f = std::move(f), items, taken, result = std::move(result)](std::size_t& count) -> std::function<void()> {
        if (*taken) return {};
        *taken = true;
        count = 1;
        return [f, items, result] { run_chunk<true>(*f, *items, 0, *result); };
    };
}

}  // namespace zmp::detail
