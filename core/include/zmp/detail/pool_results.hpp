#pragma once
// The shared state behind zmp::AsyncResult and zmp::IMapIterator: completion, cancellation,
// waiting, errors, callbacks and progress of one job (ResultCore), with its typed storage —
// values in input order (TypedResult) or a stream handed out as it comes (StreamResult). The
// engine completes them through JobSink (zmp/detail/pool_job.hpp) — from msgpack (the process
// pool) or with typed values (put_values: the thread pool) — and is known to them only as a
// ResultHost.
//
// Not a public API: zmp/pool.hpp's templates need it, so it is installed with the headers.

#include <msgpack.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <type_traits>
#include <vector>

#include "zmp/detail/deadline.hpp"
#include "zmp/detail/pool_job.hpp"
#include "zmp/errors.hpp"
#include "zmp/timeout.hpp"
#include "zmp/transport/codec.hpp"

namespace zmp::detail {

/// Wakes a waiter when any of several results completes. Copies share one state, so a callback
/// holding a copy may outlive the waiter.
class CompletionSignal {
public:
    CompletionSignal() : state_(std::make_shared<State>()) {}
    void notify() {
        std::lock_guard lock(state_->mutex);
        ++state_->count;
        state_->changed.notify_all();
    }
    /// True once the waiter and every other copy are gone: nobody would see a notify().
    bool unwatched() const { return state_.use_count() == 1; }
    /// Waits for a notify() since the last wait; false at the deadline.
    bool wait_until(const Deadline& deadline) {
        std::unique_lock lock(state_->mutex);
        const std::size_t seen = state_->seen;
        auto arrived = [&] { return state_->count > seen; };
        bool ok = true;
        if (deadline.is_never())
            state_->changed.wait(lock, arrived);
        else
            ok = state_->changed.wait_until(lock, *deadline.time(), arrived);
        state_->seen = state_->count;
        return ok;
    }

private:
    struct State {
        std::mutex mutex;
        std::condition_variable changed;
        std::size_t count = 0;
        std::size_t seen = 0;
    };
    std::shared_ptr<State> state_;
};

/// Completion, waiting, errors, callbacks and progress of one submitted job; the typed storage
/// lives in TypedResult<R> or StreamResult<R>. A job is pending until its engine starts it
/// (start()), then running until it is ready; a pending job may be cancelled instead, which makes
/// it ready with CancelledError.
class ResultCore : public JobSink {
public:
    ~ResultCore() override;
    bool ready() const;
    void wait() const;
    /// Waits up to `timeout`; true if the result is ready.
    bool wait_for(Timeout timeout) const;
    /// The job's error once it is ready (null if it succeeded).
    std::exception_ptr error() const;
    void add_done_callback(std::function<void()> callback);
    /// Wakes `signal` once the result is ready (at once if it is), from the thread that
    /// completes it: for waits on many results (as_completed, wait).
    void notify_on_done(CompletionSignal signal);
    void set_progress(std::function<void(std::size_t, std::size_t)> progress, std::size_t total);

    /// Python's Future.cancel(): true if the job is cancelled now (or was already); false once
    /// it has started or is done. A cancelled job never runs: its engine drops it.
    bool cancel();
    bool cancelled() const override;
    /// Started and not yet ready.
    bool running() const;
    /// Executor shutdown(cancel_futures): cancels the job if it has not started. A stream that
    /// has started stops reading its input instead, and CancelledError follows its last item.
    virtual void cancel_unstarted() { (void)cancel(); }

    // JobSink: called by the engine, from its threads.
    void attach(std::weak_ptr<ResultHost> host) override;
    bool start() override;
    void on_results(std::size_t first, const msgpack::object& results) override;
    void on_chunk_failed(std::size_t first, std::size_t count, std::exception_ptr error) override;
    void on_input_failed(std::exception_ptr error, std::size_t items_read) override;
    void on_all_done() override;
    void abort(std::exception_ptr error) override;
    bool wants_more(std::size_t in_flight) const override;
    bool abandoned() const override { return false; }

protected:
    /// Stores results[i] as item first+i; the caller holds mutex_.
    virtual void store(std::size_t first, const msgpack::object& results) = 0;
    /// Runs `store` (which stores `count` typed values) under mutex_, and counts them done.
    template <class Store>
    void deliver(std::size_t count, Store&& store) {
        std::lock_guard lock(mutex_);
        store();
        done_ += count;
        report_progress_locked(false);
        notify_items();
    }
    /// An item (or an error) became available to a streaming consumer; the caller holds mutex_.
    virtual void notify_items() {}
    void complete_locked(std::unique_lock<std::mutex>& lock, std::exception_ptr error);
    void report_progress_locked(bool final);
    /// Tells the engine to look again (a stream consumer made room).
    void wake_host() const;

    mutable std::mutex mutex_;
    mutable std::condition_variable changed_;
    bool ready_ = false;
    bool started_ = false;
    bool cancelled_ = false;
    std::vector<CompletionSignal> signals_;
    std::exception_ptr error_;
    std::exception_ptr first_failure_;  // Python's map: the first error, raised once all is done
    std::vector<std::function<void()>> callbacks_;
    std::function<void(std::size_t, std::size_t)> progress_;
    std::size_t done_ = 0;
    std::size_t total_ = 0;
    std::chrono::steady_clock::time_point last_progress_{};
    std::weak_ptr<ResultHost> host_;  // for the callback thread and stream wake-ups
};

/// Results in input order (map, apply): item i of the job is values_[i].
template <class R>
class TypedResult : public ResultCore {
public:
    using value_type = R;
    explicit TypedResult(std::size_t expected) { values_.reserve(expected); }
    /// Items first, first+1... succeeded with `values` (typed delivery: the thread pool).
    void put_values(std::size_t first, std::vector<R>&& values) {
        deliver(values.size(), [&] {
            if (first == values_.size()) {
                for (auto& v : values) values_.push_back(std::move(v));
            } else if constexpr (std::is_default_constructible_v<R>) {
                // Chunks complete out of order; only jobs of one chunk store other types.
                if (values_.size() < first + values.size()) values_.resize(first + values.size());
                for (std::size_t i = 0; i < values.size(); ++i) values_[first + i] = std::move(values[i]);
            }
        });
    }
    /// The results, once ready (the engine no longer writes them then).
    std::vector<R> values() const {
        std::lock_guard lock(mutex_);
        return values_;
    }
    std::vector<R> take_values() {
        std::lock_guard lock(mutex_);
        return std::move(values_);
    }
    R first_value() const {
        std::lock_guard lock(mutex_);
        return values_.at(0);
    }

protected:
    void store(std::size_t first, const msgpack::object& results) override {
        if constexpr (is_packable_v<R>) {
            if (results.type != msgpack::type::ARRAY) throw ProtocolError("a result batch is not an array");
            const std::size_t count = results.via.array.size;
            if (values_.size() < first + count) values_.resize(first + count);
            for (std::size_t i = 0; i < count; ++i)
                values_[first + i] = transport::convert<R>(results.via.array.ptr[i]);
        } else {
            throw ProtocolError("this result takes no msgpack values");  // a thread pool's: typed only
        }
    }
    std::vector<R> values_;
};

/// Results as a stream (imap, imap_unordered): handed out one by one, in order or as they come.
template <class R>
class StreamResult : public ResultCore {
public:
    using value_type = R;
    StreamResult(bool ordered, std::size_t buffer_limit) : ordered_(ordered), buffer_limit_(buffer_limit) {}
    /// Items first, first+1... succeeded with `values` (typed delivery: the thread pool).
    void put_values(std::size_t first, std::vector<R>&& values) {
        deliver(values.size(), [&] {
            for (std::size_t i = 0; i < values.size(); ++i) {
                pending_[first + i].value = std::move(values[i]);
                if (!ordered_) arrival_.push_back(first + i);
                ++buffered_;
            }
        });
    }

    /// The next item; nullopt at the end; rethrows a task's or the input's error in its place.
    /// TimeoutError if nothing comes within `timeout`.
    std::optional<R> next(Timeout timeout);

    bool wants_more(std::size_t in_flight) const override {
        std::lock_guard lock(mutex_);
        return in_flight + buffered_ < buffer_limit_;
    }
    bool abandoned() const override { return abandoned_.load() || input_cancelled_.load(); }
    void abandon() {
        abandoned_ = true;
        wake_host();
    }
    void cancel_unstarted() override {
        if (cancel()) return;
        input_cancelled_ = true;  // the engine stops reading; on_all_done says why
        wake_host();
    }

    // A stream hands errors out in their items' places instead of failing the whole job.
    void on_chunk_failed(std::size_t first, std::size_t count, std::exception_ptr error) override {
        std::lock_guard lock(mutex_);
        for (std::size_t i = 0; i < count; ++i) place_error(first + i, error);
        done_ += count;
        report_progress_locked(false);
        changed_.notify_all();
    }
    void on_input_failed(std::exception_ptr error, std::size_t items_read) override {
        std::lock_guard lock(mutex_);
        place_error(items_read, error);  // raised after the results that came before it
        changed_.notify_all();
    }
    void on_all_done() override {
        std::unique_lock lock(mutex_);
        // Every item read has been delivered (done_ of them): what was not read was cancelled.
        if (input_cancelled_) place_error(done_, std::make_exception_ptr(CancelledError("cancelled at shutdown")));
        complete_locked(lock, nullptr);
    }

protected:
    void store(std::size_t first, const msgpack::object& results) override {
        if constexpr (is_packable_v<R>) {
            if (results.type != msgpack::type::ARRAY) throw ProtocolError("a result batch is not an array");
            for (std::size_t i = 0; i < results.via.array.size; ++i) {
                Entry& e = pending_[first + i];
                e.value = transport::convert<R>(results.via.array.ptr[i]);
                if (!ordered_) arrival_.push_back(first + i);
                ++buffered_;
            }
        } else {
            throw ProtocolError("this result takes no msgpack values");  // a thread pool's: typed only
        }
    }
    void notify_items() override { changed_.notify_all(); }

private:
    struct Entry {
        std::optional<R> value;
        std::exception_ptr error;
    };
    bool ordered_;
    std::size_t buffer_limit_;
    std::atomic<bool> abandoned_{false};
    std::atomic<bool> input_cancelled_{false};
    std::map<std::size_t, Entry> pending_;
    std::deque<std::size_t> arrival_;
    std::size_t next_index_ = 0;
    std::size_t buffered_ = 0;

    void place_error(std::size_t index, const std::exception_ptr& error) {
        pending_[index].error = error;
        if (!ordered_) arrival_.push_back(index);
        ++buffered_;
    }
};

template <class R>
std::optional<R> StreamResult<R>::next(Timeout timeout) {
    std::unique_lock lock(mutex_);
    const auto deadline = Deadline::after(timeout);
    for (;;) {
        std::optional<std::size_t> index;
        if (ordered_) {
            if (pending_.count(next_index_) != 0) index = next_index_++;
        } else if (!arrival_.empty()) {
            index = arrival_.front();
            arrival_.pop_front();
        }
        if (index) {
            auto node = pending_.extract(*index);
            --buffered_;
            lock.unlock();
            wake_host();  // room for more
            if (node.mapped().error) std::rethrow_exception(node.mapped().error);
            return std::move(node.mapped().value);
        }
        if (ready_) {
            if (error_) std::rethrow_exception(error_);  // the pool went away under the stream
            return std::nullopt;
        }
        if (deadline.is_never()) {
            changed_.wait(lock);
        } else if (changed_.wait_until(lock, *deadline.time()) == std::cv_status::timeout && !ready_ &&
                   (ordered_ ? pending_.count(next_index_) == 0 : arrival_.empty())) {
            throw TimeoutError("no result arrived in time");
        }
    }
}

}  // namespace zmp::detail
