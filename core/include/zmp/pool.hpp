#pragma once
// zmp::Pool: Python's multiprocessing.Pool (and the heart of concurrent.futures'
// ProcessPoolExecutor) for C++ — a pool of worker processes that heals instead of hanging.
//
//     int square(int x) { return x * x; }
//     zmp::Pool pool(4);                                          // 4 workers (default: cpu_count())
//     std::vector<int> squares = pool.map(square, std::vector<int>{1, 2, 3});   // {1, 4, 9}
//     zmp::AsyncResult<int> r = pool.apply_async(square, 7);      // r.get() == 49
//     for (int v : pool.imap_unordered(square, std::views::iota(0, 1000))) use(v);
//
// How it works: a dispatcher thread in this process owns the truth — a table of every task and,
// per worker, the tasks in flight — and hands tasks to the workers as they have room (credits:
// each worker holds about 5 ms of work, at least 2 tasks, so a slow worker never sits on a
// backlog, and many tiny tasks share one message). Local workers are linked to it by Unix socket
// pairs, the same-host fast path. A worker that dies (killed, crashed, out of memory) is seen at
// once through its pidfd: each task it was running fails with zmp::WorkerLost naming the worker,
// pid and signal — or is tried again on another worker, if PoolOptions::max_retries allows — and
// the worker is replaced. Late or duplicate results are dropped. Nothing hangs.
//
// Workers on other hosts join a pool that binds a tcp endpoint (PoolOptions::bind; zmp/worker.hpp
// for the worker side): CURVE from the authkey, tasks by registered name (ZMP_TASK), the same
// healing — a joined worker that dies or whose host vanishes is lost within a few heartbeats and
// its tasks are handled as a dead local worker's.
//
// Tasks are plain functions or capture-free lambdas (they travel to the workers under every
// start method, see zmp/function.hpp); arguments and results are any msgpack type. A task that
// cannot travel is a compile error. A task that throws fails its result with the exception's type
// when it is known (zmp/exceptions.hpp), else zmp::RemoteError.
//
// Differences from Python, all deliberate: the destructor closes and joins (Python's `with`
// terminates, a known trap); after terminate() pending results fail with zmp::PoolTerminated
// instead of hanging; map/imap read their input as workers have room (an endless input works with
// imap); an initializer that throws breaks the pool (zmp::BrokenPool) instead of respawning for
// ever; a dead worker costs only its own tasks.
//
// Threading: a Pool may be used from any thread of the process that made it. Callbacks (result
// callbacks, done-callbacks, progress) run on the pool's callback thread, never on the
// dispatcher, so a slow callback cannot stall the pool. A forked child must not use its parent's
// Pool (ValueError), but may make its own.

#include <chrono>
#include <cstddef>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <ranges>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "zmp/authkey.hpp"
#include "zmp/context.hpp"
#include "zmp/detail/deadline.hpp"
#include "zmp/detail/pool_job.hpp"
#include "zmp/detail/pool_results.hpp"
#include "zmp/detail/pool_tasks.hpp"
#include "zmp/errors.hpp"
#include "zmp/exceptions.hpp"
#include "zmp/function.hpp"
#include "zmp/process.hpp"
#include "zmp/timeout.hpp"

namespace zmp {

struct PoolOptions {
    /// Local worker processes; 0 means cpu_count() — or none when `bind` is set (a pool served by
    /// joined workers only). Fewer than 0 is a ValueError.
    int processes = 0;
    /// A worker retires after this many tasks and is replaced (a new pid). Must be positive.
    std::optional<int> maxtasksperchild;
    /// How workers start; empty: the default start method.
    std::optional<StartMethod> context;
    /// How many times a task whose worker died is tried again on another worker before it fails
    /// with WorkerLost. The cap keeps a task that kills every worker from looping.
    int max_retries = 0;
    /// A ZeroMQ tcp endpoint ("tcp://*:5555", "tcp://10.0.0.1:0" for any free port) where worker
    /// processes on any host join the pool (zmp/worker.hpp), alongside its local workers; with
    /// `processes = 0` the pool has joined workers only. Empty: local workers only. The bound
    /// endpoint is Pool::endpoint(). Every connection uses CURVE with keys derived from `authkey`;
    /// a peer holding another key is refused (and logged, with its address).
    std::string bind;
    /// The secret joined workers must hold; empty: this run's authkey (zmp::current_authkey()).
    std::optional<Authkey> authkey;
    /// Liveness of joined workers: ZMTP heartbeats every `heartbeat` and a connection silent for
    /// `heartbeat_timeout` after one is closed. A joined worker whose host vanished (no FIN) is
    /// declared lost within about heartbeat + heartbeat_timeout + heartbeat (4 s by default), and
    /// its tasks are handled as a dead local worker's.
    std::chrono::milliseconds heartbeat{1000};
    std::chrono::milliseconds heartbeat_timeout{2000};
};

/// Options of map/imap beyond Python's chunksize: progress reporting.
struct MapOptions {
    /// Tasks per chunk; empty: Python's choice (map: len / (4 * processes), rounded up; imap: 1).
    std::optional<std::size_t> chunksize;
    /// Called with (items done, items in all) as the map progresses (total is 0 while unknown),
    /// on the pool's callback thread, at most every 50 ms and once at the end.
    std::function<void(std::size_t done, std::size_t total)> progress;
    /// Draws a progress bar on stderr, only when stderr is a terminal.
    bool progress_bar = false;
};

/// The ready-made progress bar MapOptions::progress_bar uses; usable as a progress callback.
std::function<void(std::size_t, std::size_t)> progress_bar(std::string label = "");

/// Python's callback= and error_callback= of apply_async/map_async, as a first argument:
///     pool.apply_async(zmp::callbacks(on_value, on_error), f, 1, 2);
/// Exactly one of them runs, on the pool's callback thread.
template <class OnValue, class OnError>
struct Callbacks {
    OnValue on_value;
    OnError on_error;
};
template <class OnValue, class OnError = std::nullptr_t>
Callbacks<OnValue, OnError> callbacks(OnValue on_value, OnError on_error = nullptr) {
    return {std::move(on_value), std::move(on_error)};
}

namespace detail {
class PoolCore;
}  // namespace detail

/// Python's AsyncResult (and, with done()/add_done_callback(), a concurrent.futures Future).
/// A handle: copies share the result.
template <class R>
class AsyncResult {
public:
    /// The value; rethrows the task's exception (with its type when known). TimeoutError if it
    /// is not ready within `timeout`.
    R get(Timeout timeout = forever) const {
        if (!core_->wait_for(timeout)) throw TimeoutError("the result was not ready in time");
        if (auto error = core_->error()) std::rethrow_exception(error);
        return value_();
    }
    /// Waits up to `timeout`; true if the result is ready.
    bool wait(Timeout timeout = forever) const { return core_->wait_for(timeout); }
    bool ready() const { return core_->ready(); }
    bool done() const { return core_->ready(); }
    /// True if it completed without an error; ValueError if it is not ready yet.
    bool successful() const {
        if (!core_->ready()) throw ValueError("the result is not ready");
        return core_->error() == nullptr;
    }
    /// The exception it failed with (null if it succeeded), waiting as get() does.
    std::exception_ptr exception(Timeout timeout = forever) const {
        if (!core_->wait_for(timeout)) throw TimeoutError("the result was not ready in time");
        return core_->error();
    }
    /// Runs `callback(*this)` once the result is ready — at once if it already is — on the
    /// pool's callback thread.
    void add_done_callback(std::function<void(const AsyncResult&)> callback) const {
        core_->add_done_callback([self = *this, callback = std::move(callback)] { callback(self); });
    }

    /// For the pool: the shared completion state, and how to read the value once it is ready.
    AsyncResult(std::shared_ptr<detail::ResultCore> core, std::function<R()> value)
        : core_(std::move(core)), value_(std::move(value)) {}
    const std::shared_ptr<detail::ResultCore>& core() const { return core_; }

private:
    std::shared_ptr<detail::ResultCore> core_;
    std::function<R()> value_;
};

/// concurrent.futures' name for the same thing.
template <class R>
using Future = AsyncResult<R>;

/// The lazy iterator imap/imap_unordered return; also a range (for (auto v : pool.imap(...))).
template <class R>
class IMapIterator {
public:
    /// The next result, nullopt at the end; rethrows a failed task's exception at its place.
    /// TimeoutError if none arrives within `timeout` (Python's next(timeout)).
    std::optional<R> next(Timeout timeout = forever) { return stream_->next(timeout); }

    class iterator {
    public:
        using value_type = R;
        using difference_type = std::ptrdiff_t;
        iterator() = default;
        explicit iterator(IMapIterator* owner) : owner_(owner) { ++*this; }
        const R& operator*() const { return *current_; }
        iterator& operator++() {
            current_ = owner_->next();
            if (!current_) owner_ = nullptr;
            return *this;
        }
        void operator++(int) { ++*this; }
        bool operator==(std::default_sentinel_t) const { return owner_ == nullptr; }

    private:
        IMapIterator* owner_ = nullptr;
        std::optional<R> current_;
    };
    iterator begin() { return iterator(this); }
    std::default_sentinel_t end() { return {}; }

    /// Once the last copy of an IMapIterator is gone, the pool stops reading its input.
    explicit IMapIterator(std::shared_ptr<detail::StreamResult<R>> stream)
        : stream_(stream), reader_(nullptr, [stream](void*) { stream->abandon(); }) {}

private:
    std::shared_ptr<detail::StreamResult<R>> stream_;
    std::shared_ptr<void> reader_;  // its deleter runs when the last copy goes
};

class Pool {
public:
    /// A pool of `processes` workers (0: cpu_count()). ValueError("Number of processes must be
    /// at least 1") for fewer than 0... as Python: Pool(0) and Pool(-1) are errors, Pool() is not.
    Pool() : Pool(PoolOptions{}) {}
    explicit Pool(int processes);
    explicit Pool(PoolOptions options);
    /// With an initializer, run once in each worker before its first task (initargs as msgpack).
    template <class F, class... Args>
    Pool(PoolOptions options, F initializer, Args&&... initargs)
        : Pool(std::move(options), make_initializer(initializer, std::forward<Args>(initargs)...)) {}

    /// Closes the pool and joins it: queued work completes first.
    ~Pool();
    Pool(const Pool&) = delete;
    Pool& operator=(const Pool&) = delete;

    /// Python's apply: runs f(args...) in a worker and returns its result.
    template <class F, class... Args>
    auto apply(F f, Args&&... args) {
        return apply_async(f, std::forward<Args>(args)...).get();
    }

    /// Python's apply_async: f(args...) in a worker, without waiting.
    template <class F, class... Args>
    AsyncResult<detail::result_of_t<F>> apply_async(F f, Args&&... args) {
        static_assert(travels<F, Args...>,
                      "pool tasks travel to worker processes: use a plain function or a capture-free lambda "
                      "whose parameters are msgpack types (see zmp::is_packable)");
        using R = detail::result_of_t<F>;
        using Params = detail::params_of_t<F>;
        static_assert(std::is_void_v<R> || is_packable_v<R>, "the task's result must be a msgpack type");
        auto result = std::make_shared<detail::TypedResult<detail::stored_t<R>>>(1);
        detail::EncodedChunk chunk = detail::encode_call<Params>(std::forward<Args>(args)...);
        submit_job(detail::Job{detail::task_function(f), detail::single_chunk(std::move(chunk)), result, 1});
        if constexpr (std::is_void_v<R>) {
            return AsyncResult<R>(result, [] {});
        } else {
            return AsyncResult<R>(result, [result] { return result->first_value(); });
        }
    }

    template <class OnValue, class OnError, class F, class... Args>
    AsyncResult<detail::result_of_t<F>> apply_async(Callbacks<OnValue, OnError> cbs, F f, Args&&... args) {
        auto result = apply_async(f, std::forward<Args>(args)...);
        attach_callbacks(result, std::move(cbs));
        return result;
    }

    /// concurrent.futures' submit: the same as apply_async.
    template <class F, class... Args>
    Future<detail::result_of_t<F>> submit(F f, Args&&... args) {
        return apply_async(f, std::forward<Args>(args)...);
    }

    /// Python's map: f(x) for every x of `input`, results in input order. If tasks fail, the
    /// first error is raised once every task has finished (as Python).
    template <class F, class Range>
    std::vector<detail::stored_t<detail::result_of_t<F>>> map(F f, Range&& input, MapOptions options = {}) {
        return take(map_async(f, std::forward<Range>(input), std::move(options)));
    }
    template <class F, class Range>
    auto map(F f, Range&& input, std::size_t chunksize) {
        return map(f, std::forward<Range>(input), MapOptions{.chunksize = chunksize});
    }

    template <class F, class Range>
    AsyncResult<std::vector<detail::stored_t<detail::result_of_t<F>>>> map_async(F f, Range&& input,
                                                                                 MapOptions options = {}) {
        return map_impl<false>(f, std::forward<Range>(input), std::move(options));
    }
    template <class OnValue, class OnError, class F, class Range>
    auto map_async(Callbacks<OnValue, OnError> cbs, F f, Range&& input, MapOptions options = {}) {
        auto result = map_async(f, std::forward<Range>(input), std::move(options));
        attach_callbacks(result, std::move(cbs));
        return result;
    }

    /// Python's starmap: f(args...) for every tuple of `input`.
    template <class F, class Range>
    std::vector<detail::stored_t<detail::result_of_t<F>>> starmap(F f, Range&& input, MapOptions options = {}) {
        return take(starmap_async(f, std::forward<Range>(input), std::move(options)));
    }
    template <class F, class Range>
    AsyncResult<std::vector<detail::stored_t<detail::result_of_t<F>>>> starmap_async(F f, Range&& input,
                                                                                     MapOptions options = {}) {
        return map_impl<true>(f, std::forward<Range>(input), std::move(options));
    }

    /// Python's imap / imap_unordered: a lazy iterator. The input is read as workers have room —
    /// only a bounded number of chunks is in flight or waiting to be consumed — so an endless
    /// input works. An lvalue input must outlive the iteration.
    template <class F, class Range>
    IMapIterator<detail::stored_t<detail::result_of_t<F>>> imap(F f, Range&& input, std::size_t chunksize = 1) {
        return imap_impl<true>(f, std::forward<Range>(input), chunksize);
    }
    template <class F, class Range>
    IMapIterator<detail::stored_t<detail::result_of_t<F>>> imap_unordered(F f, Range&& input,
                                                                          std::size_t chunksize = 1) {
        return imap_impl<false>(f, std::forward<Range>(input), chunksize);
    }

    /// No more submissions; queued work still completes, then the workers exit.
    void close();
    /// Stops the workers now; pending results fail with zmp::PoolTerminated.
    void terminate();
    /// Waits for the workers to exit. ValueError("Pool is still running") unless closed or
    /// terminated first.
    void join();

    /// The number of worker processes: local ones, and those joined at the moment.
    int processes() const;
    /// The endpoint workers join ("tcp://0.0.0.0:41234": the port is the real one when
    /// PoolOptions::bind asked for port 0); empty when the pool binds none.
    std::string endpoint() const;

private:
    struct Initializer {
        detail::TaskFunction function;
        std::string args;
        bool present = false;
        std::shared_ptr<detail::OwnedFds> fds;  // Connections among the initargs
    };

    template <class F, class... Args>
    static Initializer make_initializer(F& f, Args&&... args) {
        static_assert(travels<F, Args...>,
                      "the initializer travels to the workers: a plain function or a "
                      "capture-free lambda with msgpack arguments");
        auto [encoded, fds] = detail::encode_arguments<detail::params_of_t<F>>(std::forward<Args>(args)...);
        return {detail::task_function(f), std::move(encoded), true, std::move(fds)};
    }
    Pool(PoolOptions options, Initializer initializer);

    // What map and imap need of a task: it can travel, and so can its parameters and its result.
    template <class F>
    static constexpr void check_mapped_task() {
        static_assert(detail::plain_function_like<std::decay_t<F>>,
                      "pool tasks travel to worker processes: use a plain function or a capture-free lambda");
        static_assert(is_packable_v<detail::params_of_t<F>>, "the task's parameters must be msgpack types");
        static_assert(is_packable_v<detail::stored_t<detail::result_of_t<F>>>,
                      "the task's result must be a msgpack type");
    }

    template <bool Star, class F, class Range>
    auto map_impl(F f, Range&& input, MapOptions options) {
        check_mapped_task<F>();
        using R = detail::stored_t<detail::result_of_t<F>>;
        using Params = detail::params_of_t<F>;
        if constexpr (std::ranges::sized_range<Range>) {
            const std::size_t n = std::ranges::size(input);
            auto result = std::make_shared<detail::TypedResult<R>>(n);
            const std::size_t chunksize =
                options.chunksize ? checked_chunksize(*options.chunksize) : default_chunksize(n);
            prepare_progress(*result, options, n);
            if (n > 0) {
                submit_job(detail::Job{detail::task_function(f),
                                       detail::chunks_of<Params, Star>(std::forward<Range>(input), chunksize), result,
                                       n});
            } else {
                result->on_all_done();  // nothing to do: ready at once, as Python's map([])
            }
            return AsyncResult<std::vector<R>>(result, [result] { return result->values(); });
        } else {
            // Like Python, an input without a size is read into a list first, to size the chunks.
            std::vector<std::ranges::range_value_t<Range>> items;
            for (auto&& item : input) items.push_back(std::forward<decltype(item)>(item));
            return map_impl<Star>(f, std::move(items), std::move(options));
        }
    }

    template <bool Ordered, class F, class Range>
    auto imap_impl(F f, Range&& input, std::size_t chunksize) {
        check_mapped_task<F>();
        using R = detail::stored_t<detail::result_of_t<F>>;
        using Params = detail::params_of_t<F>;
        checked_chunksize(chunksize);
        auto stream = std::make_shared<detail::StreamResult<R>>(Ordered, stream_buffer_limit());
        std::size_t expected = 0;
        if constexpr (std::ranges::sized_range<Range>) expected = std::ranges::size(input);
        submit_job(detail::Job{detail::task_function(f),
                               detail::chunks_of<Params, false>(std::forward<Range>(input), chunksize), stream,
                               expected});
        return IMapIterator<R>(stream);
    }

    // A blocking map's result has one reader: its values are moved out, not copied.
    template <class R>
    static std::vector<R> take(const AsyncResult<std::vector<R>>& result) {
        result.wait();
        if (auto error = result.core()->error()) std::rethrow_exception(error);
        return static_cast<detail::TypedResult<R>&>(*result.core()).take_values();
    }

    template <class R, class OnValue, class OnError>
    static void attach_callbacks(const AsyncResult<R>& result, Callbacks<OnValue, OnError> cbs) {
        result.add_done_callback([cbs = std::move(cbs)](const AsyncResult<R>& r) {
            if (auto error = r.exception()) {
                if constexpr (!std::is_same_v<OnError, std::nullptr_t>) cbs.on_error(error);
            } else if constexpr (std::is_void_v<R>) {
                cbs.on_value();
            } else {
                cbs.on_value(r.get());
            }
        });
    }

    static std::size_t checked_chunksize(std::size_t chunksize);
    std::size_t default_chunksize(std::size_t items) const;
    std::size_t stream_buffer_limit() const;
    void prepare_progress(detail::ResultCore& result, const MapOptions& options, std::size_t total);
    void submit_job(detail::Job job);

    std::shared_ptr<detail::PoolCore> core_;
};

/// concurrent.futures.as_completed: `futures` in the order they complete (a future listed twice
/// comes once). Blocks until all are done; TimeoutError("N (of M) futures unfinished") if they are
/// not all done within `timeout`, counted from the call.
template <class R>
std::vector<Future<R>> as_completed(const std::vector<Future<R>>& futures, Timeout timeout = forever) {
    std::vector<Future<R>> pending;
    for (const auto& f : futures) {
        bool seen = false;
        for (const auto& p : pending) seen = seen || p.core() == f.core();
        if (!seen) pending.push_back(f);
    }
    const std::size_t total = pending.size();
    detail::CompletionSignal signal;
    for (const auto& f : pending) f.core()->add_done_callback([signal]() mutable { signal.notify(); });
    std::vector<Future<R>> order;
    const auto deadline = detail::Deadline::after(timeout);
    while (!pending.empty()) {
        for (auto it = pending.begin(); it != pending.end();) {
            if (it->done()) {
                order.push_back(*it);
                it = pending.erase(it);
            } else {
                ++it;
            }
        }
        if (pending.empty()) break;
        if (!signal.wait_until(deadline)) {
            throw TimeoutError(std::to_string(pending.size()) + " (of " + std::to_string(total) +
                               ") futures unfinished");
        }
    }
    return order;
}

}  // namespace zmp
