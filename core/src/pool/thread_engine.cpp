#include "pool/thread_engine.hpp"

#include <algorithm>
#include <exception>
#include <string>

#include "base/fork.hpp"
#include "runtime/identity.hpp"
#include "zmp/errors.hpp"

namespace zmp::detail {

struct ThreadEngine::ActiveJob {
    ThreadJob job;
    std::size_t running_chunks = 0;     // handed to a thread and not yet finished
    std::size_t outstanding_items = 0;  // in those chunks
    std::size_t items_read = 0;
    bool started = false;
    bool input_done = false;
    bool finished = false;
};

ThreadEngine::ThreadEngine(int threads, std::function<void()> initializer)
    : threads_(threads),
      creator_(this_process().pid()),
      generation_(fork_generation()),
      initializer_(std::move(initializer)) {
    if (threads < 1) throw ValueError("Number of processes must be at least 1");
}

ThreadEngine::~ThreadEngine() {
    if (generation_ != fork_generation()) {
        // A forked child's copy: those threads are not in this process, so there is nothing to
        // join — and std::thread must not be destroyed joinable.
        (void)new std::vector<std::thread>(std::move(workers_));
        return;
    }
    {
        std::lock_guard lock(mutex_);
        closed_ = true;
    }
    changed_.notify_all();
    for (auto& t : workers_)
        if (t.joinable()) t.join();
}

void ThreadEngine::start() {
    std::lock_guard lock(mutex_);
    for (int i = 0; i < threads_; ++i) workers_.emplace_back([this] { run(); });
}

void ThreadEngine::submit(ThreadJob job) {
    {
        std::lock_guard lock(mutex_);
        if (broken_) std::rethrow_exception(broken_);
        if (closed_ || terminating_) throw ValueError("Pool not running");
        job.result->attach(weak_from_this());
        auto active = std::make_shared<ActiveJob>();
        active->job = std::move(job);
        jobs_.push_back(std::move(active));
    }
    changed_.notify_all();
}

void ThreadEngine::close() {
    {
        std::lock_guard lock(mutex_);
        closed_ = true;
    }
    changed_.notify_all();
}

void ThreadEngine::terminate() {
    {
        std::lock_guard lock(mutex_);
        closed_ = true;
        terminating_ = true;
        abort_all(std::make_exception_ptr(PoolTerminated("the pool was terminated")));
    }
    changed_.notify_all();
    join();
}

void ThreadEngine::join() {
    std::vector<std::thread> workers;
    {
        std::lock_guard lock(mutex_);
        if (!closed_) throw ValueError("Pool is still running");
        if (joined_) return;
        joined_ = true;
        workers.swap(workers_);
    }
    for (auto& t : workers) t.join();
    callbacks_.stop();
}

void ThreadEngine::post_callback(std::function<void()> callback) { callbacks_.post(std::move(callback)); }

void ThreadEngine::wake() {
    { std::lock_guard lock(mutex_); }  // a thread about to wait sees the change first
    changed_.notify_all();
}

void ThreadEngine::withdraw() {
    {
        std::lock_guard lock(mutex_);
        // Cancelled before they started: nothing of them ever runs.
        std::erase_if(jobs_, [](const auto& job) { return !job->started && job->job.result->cancelled(); });
    }
    changed_.notify_all();
}

std::function<void()> ThreadEngine::next_work(std::shared_ptr<ActiveJob>& job, std::size_t& count) {
    for (std::size_t i = 0; i < jobs_.size(); ++i) {
        std::shared_ptr<ActiveJob> candidate = jobs_[i];  // a copy: maybe_finish may drop it from jobs_
        ActiveJob& a = *candidate;
        if (a.input_done || a.finished) continue;
        if (a.job.result->abandoned()) {
            a.input_done = true;  // nobody reads the stream: stop reading its input
            maybe_finish(candidate);
            return next_work(job, count);
        }
        if (!a.job.result->wants_more(a.outstanding_items)) continue;
        if (!a.started) {
            if (!a.job.result->start()) {  // cancelled first: withdrawn, never run
                std::erase(jobs_, candidate);
                return next_work(job, count);
            }
            a.started = true;
        }
        std::function<void()> work;
        try {
            work = a.job.next_chunk(count);
        } catch (...) {
            // The input raised: earlier chunks still complete; the error takes its place.
            a.input_done = true;
            a.job.result->on_input_failed(std::current_exception(), a.items_read);
            maybe_finish(candidate);
            return next_work(job, count);
        }
        if (!work) {
            a.input_done = true;
            maybe_finish(candidate);
            return next_work(job, count);
        }
        a.running_chunks += 1;
        a.outstanding_items += count;
        a.items_read += count;
        job = std::move(candidate);
        return work;
    }
    return {};
}

void ThreadEngine::maybe_finish(const std::shared_ptr<ActiveJob>& job) {
    if (!job->input_done || job->running_chunks > 0) return;
    if (!job->finished) {
        job->finished = true;
        job->job.result->on_all_done();
    }
    std::erase(jobs_, job);
}

void ThreadEngine::abort_all(std::exception_ptr error) {
    for (auto& job : jobs_) {
        if (job->finished) continue;
        job->finished = true;
        job->input_done = true;
        job->job.result->abort(error);
    }
    jobs_.clear();
}

void ThreadEngine::run() {
    if (initializer_) {
        try {
            initializer_();
        } catch (...) {
            // As the process pool: an initializer that fails breaks the pool.
            std::lock_guard lock(mutex_);
            if (!broken_) {
                std::string why = "unknown exception";
                try {
                    throw;
                } catch (const std::exception& e) {
                    why = e.what();
                } catch (...) {
                }
                broken_ = std::make_exception_ptr(BrokenPool("the pool's initializer failed: " + why));
                abort_all(broken_);
                closed_ = true;
            }
            changed_.notify_all();
            return;
        }
    }
    std::unique_lock lock(mutex_);
    for (;;) {
        if (terminating_ || broken_) return;
        std::shared_ptr<ActiveJob> job;
        std::size_t count = 0;
        std::function<void()> work = next_work(job, count);
        if (!work) {
            if (closed_ && jobs_.empty()) {
                changed_.notify_all();  // the other threads end too
                return;
            }
            changed_.wait(lock);
            continue;
        }
        lock.unlock();
        work();  // delivers its own results and errors; never throws
        work = nullptr;
        lock.lock();
        job->running_chunks -= 1;
        job->outstanding_items -= std::min(job->outstanding_items, count);
        if (!job->finished) maybe_finish(job);
        changed_.notify_all();  // a stream's room, or the last job done
    }
}

}  // namespace zmp::detail
