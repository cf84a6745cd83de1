#pragma once
// The results of work handed to a pool (zmp::Pool, zmp::ThreadPool, zmp::ProcessPoolExecutor):
// Python's multiprocessing AsyncResult and concurrent.futures' Future in one handle, the lazy
// iterator imap returns, and concurrent.futures' as_completed() and wait().
//
//     zmp::Future<int> f = pool.submit(square, 7);
//     f.result();                          // 49 (rethrows the task's exception)
//     f.cancel();                          // true only if the task has not started: it never will
//     for (auto& done : zmp::as_completed(futures)) use(done.result());    // as each completes
//     auto [done, not_done] = zmp::wait(futures, 1s, zmp::FIRST_COMPLETED);
//
// Threading: a result may be waited for, read, cancelled and given callbacks from any thread.
// Callbacks run on the pool's callback thread, never on the thread that runs its tasks.

#include <cstddef>
#include <exception>
#include <functional>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "zmp/detail/deadline.hpp"
#include "zmp/detail/pool_results.hpp"
#include "zmp/errors.hpp"
#include "zmp/timeout.hpp"

namespace zmp {

namespace detail {

/// The iterator of a range whose owner hands out its items with next() (nullopt at the end):
/// each step waits in next(), as Python's iterators do.
template <class Owner, class T>
class NextIterator {
public:
    using value_type = T;
    using difference_type = std::ptrdiff_t;
    NextIterator() = default;
    explicit NextIterator(Owner* owner) : owner_(owner) { ++*this; }
    const T& operator*() const { return *current_; }
    NextIterator& operator++() {
        current_ = owner_->next();
        if (!current_) owner_ = nullptr;
        return *this;
    }
    void operator++(int) { ++*this; }
    bool operator==(std::default_sentinel_t) const { return owner_ == nullptr; }

private:
    Owner* owner_ = nullptr;
    std::optional<T> current_;
};

}  // namespace detail

/// Python's AsyncResult, and concurrent.futures' Future (zmp::Future is the same type). A handle:
/// copies share the result. A task is pending until its pool starts it (hands it to a worker),
/// then running, then done; a pending task may be cancelled instead, and is then done too.
template <class R>
class AsyncResult {
public:
    /// The value; rethrows the task's exception (with its type when known). TimeoutError if it
    /// is not done within `timeout`; CancelledError if it was cancelled.
    R get(Timeout timeout = forever) const {
        if (!core_->wait_for(timeout)) throw TimeoutError("the result was not ready in time");
        if (auto error = core_->error()) std::rethrow_exception(error);
        return value_();
    }
    /// concurrent.futures' name for get().
    R result(Timeout timeout = forever) const { return get(timeout); }
    /// Waits up to `timeout`; true if the result is ready.
    bool wait(Timeout timeout = forever) const { return core_->wait_for(timeout); }
    /// True once it is done: finished, failed or cancelled.
    bool ready() const { return core_->ready(); }
    bool done() const { return core_->ready(); }
    /// True if it completed without an error; ValueError if it is not ready yet.
    bool successful() const {
        if (!core_->ready()) throw ValueError("the result is not ready");
        return core_->error() == nullptr;
    }
    /// The exception it failed with (null if it succeeded), waiting as get() does;
    /// CancelledError if it was cancelled (as concurrent.futures).
    std::exception_ptr exception(Timeout timeout = forever) const {
        if (!core_->wait_for(timeout)) throw TimeoutError("the result was not ready in time");
        if (core_->cancelled()) std::rethrow_exception(core_->error());
        return core_->error();
    }
    /// Withdraws a task its pool has not started: it never runs, and the result is done with
    /// CancelledError (waiters wake, done-callbacks run). True if it is cancelled now (or was
    /// already); false if it is running or done. A map's result is one task for this purpose:
    /// it can be cancelled until its first chunk is handed out.
    bool cancel() const { return core_->cancel(); }
    bool cancelled() const { return core_->cancelled(); }
    /// True while a worker has it: started, not yet done (it can no longer be cancelled).
    bool running() const { return core_->running(); }
    /// Runs `callback(*this)` once the result is done — at once if it already is — on the
    /// pool's callback thread.
    void add_done_callback(std::function<void(const AsyncResult&)> callback) const {
        core_->add_done_callback([self = *this, callback = std::move(callback)] { callback(self); });
    }

    /// For the pools: the shared state, and how to read the value once it is ready.
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

    using iterator = detail::NextIterator<IMapIterator, R>;
    iterator begin() { return iterator(this); }
    std::default_sentinel_t end() { return {}; }

    /// For the pools: once the last copy of an IMapIterator is gone, the pool stops reading its
    /// input.
    explicit IMapIterator(std::shared_ptr<detail::StreamResult<R>> stream)
        : stream_(stream), reader_(nullptr, [stream](void*) { stream->abandon(); }) {}
    std::shared_ptr<detail::ResultCore> core() const { return stream_; }

private:
    std::shared_ptr<detail::StreamResult<R>> stream_;
    std::shared_ptr<void> reader_;  // its deleter runs when the last copy goes
};

namespace detail {

/// The futures of a list, each once (a future listed twice is the same future).
template <class R>
std::vector<Future<R>> distinct(const std::vector<Future<R>>& futures) {
    std::vector<Future<R>> out;
    for (const auto& f : futures) {
        bool seen = false;
        for (const auto& o : out) seen = seen || o.core() == f.core();
        if (!seen) out.push_back(f);
    }
    return out;
}

}  // namespace detail

/// What concurrent.futures.as_completed() returns: a lazy range over the futures, each yielded
/// as soon as it is done (those already done first).
template <class R>
class AsCompleted {
public:
    /// The next future to be done, waiting for it; nullopt once every future has been yielded.
    /// TimeoutError("N (of M) futures unfinished") if the timeout given to as_completed()
    /// (counted from that call) passes first.
    std::optional<Future<R>> next() {
        State& s = *state_;
        for (bool timed_out = false;; timed_out = !s.signal.wait_until(s.deadline)) {
            for (auto it = s.pending.begin(); it != s.pending.end(); ++it) {
                if (it->done()) {
                    Future<R> done = *it;
                    s.pending.erase(it);
                    return done;
                }
            }
            if (s.pending.empty()) return std::nullopt;
            if (timed_out) {
                throw TimeoutError(std::to_string(s.pending.size()) + " (of " + std::to_string(s.total) +
                                   ") futures unfinished");
            }
        }
    }

    using iterator = detail::NextIterator<AsCompleted, Future<R>>;
    /// Waits for the first future (see next()).
    iterator begin() { return iterator(this); }
    std::default_sentinel_t end() { return {}; }

    AsCompleted(const std::vector<Future<R>>& futures, Timeout timeout)
        : state_(std::make_shared<State>(detail::distinct(futures), detail::Deadline::after(timeout))) {
        for (const auto& f : state_->pending) f.core()->notify_on_done(state_->signal);
    }

private:
    struct State {
        State(std::vector<Future<R>> futures, detail::Deadline at)
            : pending(std::move(futures)), total(pending.size()), deadline(at) {}
        std::vector<Future<R>> pending;
        std::size_t total;
        detail::Deadline deadline;
        detail::CompletionSignal signal;
    };
    std::shared_ptr<State> state_;
};

/// concurrent.futures.as_completed: the futures, each as soon as it is done — a lazy range, so
/// the first is in hand while the others still run (a future listed twice comes once). The
/// timeout counts from this call; iterating past it with futures unfinished raises TimeoutError.
template <class R>
AsCompleted<R> as_completed(const std::vector<Future<R>>& futures, Timeout timeout = forever) {
    return AsCompleted<R>(futures, timeout);
}

/// When zmp::wait() returns (concurrent.futures' FIRST_COMPLETED, FIRST_EXCEPTION, ALL_COMPLETED).
enum class ReturnWhen {
    first_completed,  ///< any future is done (or cancelled)
    first_exception,  ///< any future failed with an exception; if none does, all are done
    all_completed,    ///< every future is done
};
inline constexpr ReturnWhen FIRST_COMPLETED = ReturnWhen::first_completed;
inline constexpr ReturnWhen FIRST_EXCEPTION = ReturnWhen::first_exception;
inline constexpr ReturnWhen ALL_COMPLETED = ReturnWhen::all_completed;

/// What zmp::wait() returns: Python's (done, not_done) pair.
template <class R>
struct DoneAndNotDone {
    std::vector<Future<R>> done;
    std::vector<Future<R>> not_done;
};

/// concurrent.futures.wait: waits until `return_when` holds or `timeout` passes (no error then:
/// the futures not done yet are in not_done). Each future appears once, in the order given.
template <class R>
DoneAndNotDone<R> wait(const std::vector<Future<R>>& futures, Timeout timeout = forever,
                       ReturnWhen return_when = ALL_COMPLETED) {
    const auto all = detail::distinct(futures);
    const auto deadline = detail::Deadline::after(timeout);
    detail::CompletionSignal signal;
    for (const auto& f : all) f.core()->notify_on_done(signal);
    for (bool timed_out = false;; timed_out = !signal.wait_until(deadline)) {
        DoneAndNotDone<R> split;
        bool failed = false;
        for (const auto& f : all) {
            if (f.done()) {
                failed = failed || (!f.cancelled() && f.core()->error() != nullptr);
                split.done.push_back(f);
            } else {
                split.not_done.push_back(f);
            }
        }
        const bool enough = split.not_done.empty() || (return_when == FIRST_COMPLETED && !split.done.empty()) ||
                            (return_when == FIRST_EXCEPTION && failed);
        if (enough || timed_out) return split;
    }
}

}  // namespace zmp
