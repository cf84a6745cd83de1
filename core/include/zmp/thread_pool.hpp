#pragma once
// zmp::ThreadPool: Python's multiprocessing.pool.ThreadPool — zmp::Pool's API on threads of this
// process, for I/O-bound work (waiting on sockets, files, other processes), where worker
// processes would only add copies.
//
//     zmp::ThreadPool pool(8);                                    // 8 threads (default: cpu_count())
//     auto pages = pool.map([&](const std::string& url) { return fetch(session, url); }, urls);
//     zmp::Future<Page> f = pool.submit(fetch, std::ref(session), url);
//
// Tasks are any callables — lambdas with captures too — and arguments and results any copyable
// types: nothing is serialised, nothing leaves the process. A task's exception reaches the caller
// as it was thrown. Results, futures, callbacks, progress and imap behave as in zmp::Pool (the
// same AsyncResult, Future and IMapIterator; the input is read as threads have room).
//
// Differences from zmp::Pool: a running task cannot be stopped (threads cannot be killed), so
// terminate() fails the pending work with zmp::PoolTerminated and waits for the running tasks to
// return; an initializer that throws breaks the pool (zmp::BrokenPool). The destructor closes and
// joins, as Pool's does (Python's `with ThreadPool()` terminates).
//
// Threading: a ThreadPool may be used from any thread of the process that made it; a forked
// child must not use its parent's (ValueError), but may make its own.

#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <ranges>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "zmp/detail/thread_tasks.hpp"
#include "zmp/futures.hpp"
#include "zmp/pool.hpp"

namespace zmp {

namespace detail {
class ThreadEngine;
}  // namespace detail

class ThreadPool {
public:
    /// cpu_count() threads.
    ThreadPool();
    /// `processes` threads; ValueError("Number of processes must be at least 1") below 1.
    explicit ThreadPool(int processes);
    /// With an initializer, called in each thread before its first task with copies of initargs.
    template <class F, class... Args>
    ThreadPool(int processes, F initializer, Args&&... initargs)
        : ThreadPool(Initializing{}, processes,
                     std::function<void()>([initializer = std::move(initializer),
                                            args = std::make_tuple(std::forward<Args>(initargs)...)]() mutable {
                         std::apply(initializer, args);
                     })) {}

    /// Closes the pool and joins it: queued work completes first.
    ~ThreadPool();
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    /// Python's apply: f(args...) on a pool thread; its result.
    template <class F, class... Args>
    auto apply(F f, Args&&... args) {
        return apply_async(std::move(f), std::forward<Args>(args)...).get();
    }

    /// Python's apply_async: f(args...) on a pool thread, without waiting. The arguments are
    /// copied (or moved) into the task.
    template <class F, class... Args>
    AsyncResult<std::invoke_result_t<F&, std::decay_t<Args>&&...>> apply_async(F f, Args&&... args) {
        using R = std::invoke_result_t<F&, std::decay_t<Args>&&...>;
        using Stored = detail::stored_t<R>;
        static_assert(std::is_copy_constructible_v<Stored>, "a ThreadPool task's result must be copyable");
        auto result = std::make_shared<detail::TypedResult<Stored>>(1);
        submit_job(detail::ThreadJob{
            detail::thread_call(std::make_shared<F>(std::move(f)),
                                std::tuple<std::decay_t<Args>...>(std::forward<Args>(args)...), result),
            result});
        if constexpr (std::is_void_v<R>) {
            return AsyncResult<R>(result, [] {});
        } else {
            return AsyncResult<R>(result, [result] { return result->first_value(); });
        }
    }
    template <class OnValue, class OnError, class F, class... Args>
    auto apply_async(Callbacks<OnValue, OnError> cbs, F f, Args&&... args) {
        auto result = apply_async(std::move(f), std::forward<Args>(args)...);
        detail::attach_callbacks(result, std::move(cbs));
        return result;
    }

    /// concurrent.futures' submit: the same as apply_async.
    template <class F, class... Args>
    auto submit(F f, Args&&... args) {
        return apply_async(std::move(f), std::forward<Args>(args)...);
    }

    /// Python's map: f(x) for every x of `input`, results in input order; the first error is
    /// raised once every task has finished.
    template <class F, class Range>
    auto map(F f, Range&& input, MapOptions options = {}) {
        return detail::take(map_async(std::move(f), std::forward<Range>(input), std::move(options)));
    }
    template <class F, class Range>
    auto map(F f, Range&& input, std::size_t chunksize) {
        return map(std::move(f), std::forward<Range>(input), MapOptions{.chunksize = chunksize});
    }
    template <class F, class Range>
    auto map_async(F f, Range&& input, MapOptions options = {}) {
        return map_impl<false>(std::move(f), std::forward<Range>(input), std::move(options));
    }
    template <class OnValue, class OnError, class F, class Range>
    auto map_async(Callbacks<OnValue, OnError> cbs, F f, Range&& input, MapOptions options = {}) {
        auto result = map_async(std::move(f), std::forward<Range>(input), std::move(options));
        detail::attach_callbacks(result, std::move(cbs));
        return result;
    }

    /// Python's starmap: f(args...) for every tuple of `input`.
    template <class F, class Range>
    auto starmap(F f, Range&& input, MapOptions options = {}) {
        return detail::take(starmap_async(std::move(f), std::forward<Range>(input), std::move(options)));
    }
    template <class F, class Range>
    auto starmap_async(F f, Range&& input, MapOptions options = {}) {
        return map_impl<true>(std::move(f), std::forward<Range>(input), std::move(options));
    }
    template <class OnValue, class OnError, class F, class Range>
    auto starmap_async(Callbacks<OnValue, OnError> cbs, F f, Range&& input, MapOptions options = {}) {
        auto result = starmap_async(std::move(f), std::forward<Range>(input), std::move(options));
        detail::attach_callbacks(result, std::move(cbs));
        return result;
    }

    /// Python's imap / imap_unordered: a lazy iterator; the input is read as threads have room.
    template <class F, class Range>
    auto imap(F f, Range&& input, std::size_t chunksize = 1) {
        return imap_impl<true>(std::move(f), std::forward<Range>(input), chunksize);
    }
    template <class F, class Range>
    auto imap_unordered(F f, Range&& input, std::size_t chunksize = 1) {
        return imap_impl<false>(std::move(f), std::forward<Range>(input), chunksize);
    }

    /// No more submissions; queued work still completes, then the threads end.
    void close();
    /// Pending work fails with zmp::PoolTerminated; waits for the tasks running now.
    void terminate();
    /// Waits for the threads to end. ValueError("Pool is still running") unless closed first.
    void join();
    /// The number of threads.
    int processes() const;

private:
    struct Initializing {};
    ThreadPool(Initializing, int processes, std::function<void()> initializer);

    template <bool Star, class F, class Range>
    auto map_impl(F f, Range&& input, MapOptions options) {
        using Element = std::ranges::range_value_t<Range>;
        using R = detail::thread_call_result_t<F, Element, Star>;
        using Stored = detail::stored_t<R>;
        static_assert(std::is_default_constructible_v<Stored> && std::is_copy_constructible_v<Stored>,
                      "a ThreadPool map's results must be default-constructible and copyable (they are stored by "
                      "index)");
        if constexpr (std::ranges::sized_range<Range>) {
            const std::size_t n = std::ranges::size(input);
            auto result = std::make_shared<detail::TypedResult<Stored>>(n);
            const std::size_t chunksize = options.chunksize ? detail::checked_chunksize(*options.chunksize)
                                                            : detail::default_chunksize(n, processes());
            detail::prepare_progress(*result, options, n);
            if (n > 0) {
                submit_job(
                    detail::ThreadJob{detail::thread_chunks_of<Star>(std::make_shared<F>(std::move(f)),
                                                                     std::forward<Range>(input), chunksize, result),
                                      result});
            } else {
                result->on_all_done();
            }
            return AsyncResult<std::vector<Stored>>(result, [result] { return result->values(); });
        } else {
            std::vector<Element> items;
            for (auto&& item : input) items.push_back(std::forward<decltype(item)>(item));
            return map_impl<Star>(std::move(f), std::move(items), std::move(options));
        }
    }

    template <bool Ordered, class F, class Range>
    auto imap_impl(F f, Range&& input, std::size_t chunksize) {
        using Element = std::ranges::range_value_t<Range>;
        using Stored = detail::stored_t<detail::thread_call_result_t<F, Element, false>>;
        detail::checked_chunksize(chunksize);
        auto stream = std::make_shared<detail::StreamResult<Stored>>(Ordered, detail::stream_buffer_limit(processes()));
        submit_job(detail::ThreadJob{detail::thread_chunks_of<false>(std::make_shared<F>(std::move(f)),
                                                                     std::forward<Range>(input), chunksize, stream),
                                     stream});
        return IMapIterator<Stored>(stream);
    }

    void submit_job(detail::ThreadJob job);

    std::shared_ptr<detail::ThreadEngine> core_;
};

}  // namespace zmp
