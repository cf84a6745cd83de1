#pragma once
// zmp::Pool: Python's multiprocessing.Pool (and the heart of concurrent.futures'
// ProcessPoolExecutor) for C++ — a pool of worker processes that heals instead of hanging.
//
//     int square(int x) { return x * x; }
//     zmp::Pool pool(4);                                          // 4 workers (default: cpu_count())
//     std::vector<int> squares = pool.map(square, std::vector<int>{1, 2, 3});   // {1, 4, 9}
//     zmp::AsyncResult<int> r = pool.apply_async(square, 7);      // r.get() == 49
//     for (int v : pool.imap_unordered(square, std::views::iota(0, 1000))) use(v);
//     zmp::ProcessPoolExecutor executor;                          // concurrent.futures' face
//     zmp::Future<int> f = executor.submit(square, 8);            // f.result(), f.cancel()...
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
// terminates, a known trap; PoolOptions::terminate_on_exit asks for Python's way); after
// terminate() pending results fail with zmp::PoolTerminated
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
#include <mutex>
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
#include "zmp/futures.hpp"
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
    /// What the destructor does: false (the default) closes and joins — queued work completes;
    /// true terminates, as Python's `with Pool()` does — pending work fails with PoolTerminated.
    bool terminate_on_exit = false;
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
    /// on the pool's callback thread, at most every 50 ms and once at the end. That last call may
    /// run after get() has returned: capture by value (or by shared_ptr) what it uses.
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

namespace detail {

/// Python's chunksize rule: ValueError("Chunksize must be 1+, not 0").
std::size_t checked_chunksize(std::size_t chunksize);
/// Python's default map chunksize: len / (4 * processes), rounded up.
std::size_t default_chunksize(std::size_t items, int processes);
/// How many items a stream may have in flight or waiting for its consumer.
std::size_t stream_buffer_limit(int processes);
/// Sets up MapOptions' progress reporting on a job's result.
void prepare_progress(ResultCore& result, const MapOptions& options, std::size_t total);

/// A blocking map's result has one reader: its values are moved out, not copied.
template <class R>
std::vector<R> take(const AsyncResult<std::vector<R>>& result) {
    result.wait();
    if (auto error = result.core()->error()) std::rethrow_exception(error);
    return static_cast<TypedResult<R>&>(*result.core()).take_values();
}

/// Runs exactly one of `cbs` once `result` is done (on_error with a cancelled result's
/// CancelledError too).
template <class R, class OnValue, class OnError>
void attach_callbacks(const AsyncResult<R>& result, Callbacks<OnValue, OnError> cbs) {
    // A call whose task cannot travel has been reported already; the callbacks need no second word.
    if constexpr (!std::is_same_v<R, NotATask> && !std::is_same_v<R, std::vector<NotATask>>) {
        result.add_done_callback([cbs = std::move(cbs)](const AsyncResult<R>& r) {
            if (auto error = r.core()->error()) {
                if constexpr (!std::is_same_v<OnError, std::nullptr_t>) cbs.on_error(error);
            } else if constexpr (std::is_void_v<R>) {
                cbs.on_value();
            } else {
                cbs.on_value(r.get());
            }
        });
    }
}

// Every entry point of Pool checks its task with these before anything else, so that a task that
// cannot travel is one clear message at the caller's line (the signatures use task_result_t,
// which names NotATask instead of failing).
template <class F, class... Args>
constexpr bool check_task_call() {
    static_assert(travels<F, Args...>,
                  "pool tasks travel to worker processes: use a plain function or a capture-free lambda "
                  "whose parameters are msgpack types (see zmp::is_packable)");
    if constexpr (travels<F, Args...>) {
        static_assert(std::is_void_v<result_of_t<F>> || is_packable_v<result_of_t<F>>,
                      "the task's result must be a msgpack type");
        return std::is_void_v<result_of_t<F>> || is_packable_v<result_of_t<F>>;
    }
    return false;
}

template <class F>
constexpr bool check_mapped_task() {
    static_assert(plain_function_like<std::decay_t<F>>,
                  "pool tasks travel to worker processes: use a plain function or a capture-free lambda "
                  "whose parameters are msgpack types (see zmp::is_packable)");
    if constexpr (plain_function_like<std::decay_t<F>>) {
        static_assert(is_packable_v<params_of_t<F>>, "the task's parameters must be msgpack types");
        static_assert(is_packable_v<stored_t<result_of_t<F>>>, "the task's result must be a msgpack type");
        return is_packable_v<params_of_t<F>> && is_packable_v<stored_t<result_of_t<F>>>;
    }
    return false;
}

}  // namespace detail

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

    /// Closes the pool and joins it — queued work completes first — or, with
    /// PoolOptions::terminate_on_exit, terminates it.
    ~Pool();
    Pool(const Pool&) = delete;
    Pool& operator=(const Pool&) = delete;

    /// Python's apply: runs f(args...) in a worker and returns its result.
    template <class F, class... Args>
    detail::task_result_t<F> apply(F f, Args&&... args) {
        return apply_async(f, std::forward<Args>(args)...).get();
    }

    /// Python's apply_async: f(args...) in a worker, without waiting.
    template <class F, class... Args>
    AsyncResult<detail::task_result_t<F>> apply_async(F f, Args&&... args) {
        if constexpr (detail::check_task_call<F, Args...>()) {
            using R = detail::result_of_t<F>;
            auto result = std::make_shared<detail::TypedResult<detail::stored_t<R>>>(1);
            detail::EncodedChunk chunk = detail::encode_call<detail::params_of_t<F>>(std::forward<Args>(args)...);
            submit_job(detail::Job{detail::task_function(f), detail::single_chunk(std::move(chunk)), result, 1});
            if constexpr (std::is_void_v<R>) {
                return AsyncResult<R>(result, [] {});
            } else {
                return AsyncResult<R>(result, [result] { return result->first_value(); });
            }
        } else {
            __builtin_unreachable();  // check_task_call has said why
        }
    }
    /// With Python's callback= and error_callback= (see zmp::callbacks).
    template <class OnValue, class OnError, class F, class... Args>
    AsyncResult<detail::task_result_t<F>> apply_async(Callbacks<OnValue, OnError> cbs, F f, Args&&... args) {
        auto result = apply_async(f, std::forward<Args>(args)...);
        detail::attach_callbacks(result, std::move(cbs));
        return result;
    }

    /// concurrent.futures' submit: the same as apply_async.
    template <class F, class... Args>
    Future<detail::task_result_t<F>> submit(F f, Args&&... args) {
        return apply_async(f, std::forward<Args>(args)...);
    }

    /// Python's map: f(x) for every x of `input`, results in input order. If tasks fail, the
    /// first error is raised once every task has finished (as Python).
    template <class F, class Range>
    std::vector<detail::task_stored_t<F>> map(F f, Range&& input, MapOptions options = {}) {
        return detail::take(map_async(f, std::forward<Range>(input), std::move(options)));
    }
    template <class F, class Range>
    std::vector<detail::task_stored_t<F>> map(F f, Range&& input, std::size_t chunksize) {
        return map(f, std::forward<Range>(input), MapOptions{.chunksize = chunksize});
    }
    template <class F, class Range>
    AsyncResult<std::vector<detail::task_stored_t<F>>> map_async(F f, Range&& input, MapOptions options = {}) {
        return map_impl<false>(f, std::forward<Range>(input), std::move(options));
    }
    template <class OnValue, class OnError, class F, class Range>
    AsyncResult<std::vector<detail::task_stored_t<F>>> map_async(Callbacks<OnValue, OnError> cbs, F f, Range&& input,
                                                                 MapOptions options = {}) {
        auto result = map_async(f, std::forward<Range>(input), std::move(options));
        detail::attach_callbacks(result, std::move(cbs));
        return result;
    }

    /// Python's starmap: f(args...) for every tuple of `input`.
    template <class F, class Range>
    std::vector<detail::task_stored_t<F>> starmap(F f, Range&& input, MapOptions options = {}) {
        return detail::take(starmap_async(f, std::forward<Range>(input), std::move(options)));
    }
    template <class F, class Range>
    AsyncResult<std::vector<detail::task_stored_t<F>>> starmap_async(F f, Range&& input, MapOptions options = {}) {
        return map_impl<true>(f, std::forward<Range>(input), std::move(options));
    }
    template <class OnValue, class OnError, class F, class Range>
    AsyncResult<std::vector<detail::task_stored_t<F>>> starmap_async(Callbacks<OnValue, OnError> cbs, F f,
                                                                     Range&& input, MapOptions options = {}) {
        auto result = starmap_async(f, std::forward<Range>(input), std::move(options));
        detail::attach_callbacks(result, std::move(cbs));
        return result;
    }

    /// Python's imap / imap_unordered: a lazy iterator. The input is read as workers have room —
    /// only a bounded number of chunks is in flight or waiting to be consumed — so an endless
    /// input works. An lvalue input must outlive the iteration.
    template <class F, class Range>
    IMapIterator<detail::task_stored_t<F>> imap(F f, Range&& input, std::size_t chunksize = 1) {
        return imap_impl<true>(f, std::forward<Range>(input), chunksize, detail::stream_buffer_limit(processes()));
    }
    template <class F, class Range>
    IMapIterator<detail::task_stored_t<F>> imap_unordered(F f, Range&& input, std::size_t chunksize = 1) {
        return imap_impl<false>(f, std::forward<Range>(input), chunksize, detail::stream_buffer_limit(processes()));
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
    friend class ProcessPoolExecutor;

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
        if constexpr (travels<F, Args...>) {
            auto [encoded, fds] = detail::encode_arguments<detail::params_of_t<F>>(std::forward<Args>(args)...);
            return {detail::task_function(f), std::move(encoded), true, std::move(fds)};
        } else {
            __builtin_unreachable();
        }
    }
    Pool(PoolOptions options, Initializer initializer);

    template <bool Star, class F, class Range>
    AsyncResult<std::vector<detail::task_stored_t<F>>> map_impl(F f, Range&& input, MapOptions options) {
        if constexpr (detail::check_mapped_task<F>()) {
            using R = detail::task_stored_t<F>;
            using Params = detail::params_of_t<F>;
            if constexpr (std::ranges::sized_range<Range>) {
                const std::size_t n = std::ranges::size(input);
                auto result = std::make_shared<detail::TypedResult<R>>(n);
                const std::size_t chunksize = options.chunksize ? detail::checked_chunksize(*options.chunksize)
                                                                : detail::default_chunksize(n, processes());
                detail::prepare_progress(*result, options, n);
                if (n > 0) {
                    submit_job(detail::Job{detail::task_function(f),
                                           detail::chunks_of<Params, Star>(std::forward<Range>(input), chunksize),
                                           result, n});
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
        } else {
            __builtin_unreachable();  // check_mapped_task has said why
        }
    }

    // A stream over the input: at most `buffer_limit` items in flight or waiting to be consumed.
    template <bool Ordered, class F, class Range>
    IMapIterator<detail::task_stored_t<F>> imap_impl(F f, Range&& input, std::size_t chunksize,
                                                     std::size_t buffer_limit) {
        if constexpr (detail::check_mapped_task<F>()) {
            using R = detail::task_stored_t<F>;
            using Params = detail::params_of_t<F>;
            detail::checked_chunksize(chunksize);
            auto stream = std::make_shared<detail::StreamResult<R>>(Ordered, buffer_limit);
            std::size_t expected = 0;
            if constexpr (std::ranges::sized_range<Range>) expected = std::ranges::size(input);
            submit_job(detail::Job{detail::task_function(f),
                                   detail::chunks_of<Params, false>(std::forward<Range>(input), chunksize), stream,
                                   expected});
            return IMapIterator<R>(stream);
        } else {
            __builtin_unreachable();  // check_mapped_task has said why
        }
    }

    void submit_job(detail::Job job);

    std::shared_ptr<detail::PoolCore> core_;
    bool terminate_on_exit_ = false;
};

/// concurrent.futures.ProcessPoolExecutor, on a zmp::Pool: the same workers, healing and task
/// rules (plain functions or capture-free lambdas, msgpack arguments and results).
///
///     zmp::ProcessPoolExecutor executor({.processes = 4});
///     auto f = executor.submit(square, 7);                      // a zmp::Future<int>
///     for (int v : executor.map(square, inputs, 10s)) use(v);   // in order; TimeoutError after 10 s
///     executor.shutdown(true, true);                            // cancel what has not started
///
/// The destructor is shutdown(true), as Python's `with`. Threading: as Pool.
class ProcessPoolExecutor {
public:
    /// `options.processes` workers (0: cpu_count()), as Pool(options).
    explicit ProcessPoolExecutor(PoolOptions options = {}) : pool_(std::move(options)) {}
    template <class F, class... Args>
    ProcessPoolExecutor(PoolOptions options, F initializer, Args&&... initargs)
        : pool_(std::move(options), initializer, std::forward<Args>(initargs)...) {}
    ~ProcessPoolExecutor();
    ProcessPoolExecutor(const ProcessPoolExecutor&) = delete;
    ProcessPoolExecutor& operator=(const ProcessPoolExecutor&) = delete;

    /// f(args...) in a worker: a Future. RuntimeError("cannot schedule new futures after
    /// shutdown") once shut down.
    template <class F, class... Args>
    Future<detail::task_result_t<F>> submit(F f, Args&&... args) {
        check_open();
        auto future = pool_.apply_async(f, std::forward<Args>(args)...);
        remember(future.core());
        return future;
    }

    /// f(x) for every x of `input`: the results in input order, each raising its task's error
    /// when reached. The input is read at once (as Python's); results are yielded as they come
    /// in order; TimeoutError from the iteration once `timeout`, counted from this call, passes
    /// with the next result not yet there.
    template <class F, class Range>
    auto map(F f, Range&& input, Timeout timeout = forever, std::size_t chunksize = 1) {
        check_open();
        using Element = std::ranges::range_value_t<Range>;
        std::vector<Element> items;
        if constexpr (std::ranges::sized_range<Range>) items.reserve(std::ranges::size(input));
        for (auto&& item : input) items.push_back(std::forward<decltype(item)>(item));
        // Every result may wait for its reader: nothing stops the workers but the input's end.
        auto stream = pool_.imap_impl<true>(f, std::move(items), chunksize, static_cast<std::size_t>(-1));
        remember(stream.core());
        return ExecutorMap<detail::task_stored_t<F>>(std::move(stream), detail::Deadline::after(timeout));
    }

    /// Python's shutdown: no more submissions; with `cancel_futures`, every future not started
    /// yet is cancelled (and a map's results not started yet raise CancelledError in their
    /// place); with `wait`, returns once every worker has exited.
    void shutdown(bool wait = true, bool cancel_futures = false);

    /// What map() returns: the results in order (also a range).
    template <class R>
    class ExecutorMap {
    public:
        /// The next result, nullopt at the end; rethrows its task's error; TimeoutError once the
        /// map's timeout has passed.
        std::optional<R> next() {
            if (deadline_.is_never()) return stream_.next();
            const auto left = std::chrono::duration_cast<Seconds>(deadline_.remaining());
            return stream_.next(left);
        }
        using iterator = detail::NextIterator<ExecutorMap, R>;
        iterator begin() { return iterator(this); }
        std::default_sentinel_t end() { return {}; }

        ExecutorMap(IMapIterator<R> stream, detail::Deadline deadline)
            : stream_(std::move(stream)), deadline_(deadline) {}

    private:
        IMapIterator<R> stream_;
        detail::Deadline deadline_;
    };

private:
    void check_open();
    /// Keeps a weak handle on what was submitted, for shutdown(cancel_futures).
    void remember(std::shared_ptr<detail::ResultCore> result);

    Pool pool_;
    std::mutex mutex_;
    bool shut_down_ = false;
    std::vector<std::weak_ptr<detail::ResultCore>> submitted_;
};

}  // namespace zmp
