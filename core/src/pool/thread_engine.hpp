#pragma once
// The engine of a zmp::ThreadPool: worker threads of this process that take the chunks of its
// jobs and run them, one chunk at a time each. A job's input is read under the engine's lock (one
// reader at a time), as threads have room — so, as in the process pool, an endless input works
// with imap; the work a chunk stands for runs outside the lock and delivers its own results. The
// engine knows the results of its jobs only as JobSinks.

#include <sys/types.h>

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "pool/callback_thread.hpp"
#include "zmp/detail/pool_job.hpp"

namespace zmp::detail {

class ThreadEngine final : public ResultHost, public std::enable_shared_from_this<ThreadEngine> {
public:
    /// `threads` workers (at least 1), each running `initializer` (if any) before its first task.
    ThreadEngine(int threads, std::function<void()> initializer);
    ~ThreadEngine() override;

    /// Starts the threads.
    void start();
    /// ValueError("Pool not running") once closed; the initializer's error (BrokenPool) once broken.
    void submit(ThreadJob job);
    void close();
    /// Pending work fails with PoolTerminated; the tasks running now finish (a thread cannot be
    /// stopped), and terminate() returns once they have.
    void terminate();
    void join();
    int threads() const { return threads_; }
    pid_t creator() const { return creator_; }

    // ResultHost.
    void post_callback(std::function<void()> callback) override;
    void wake() override;
    void withdraw() override;

private:
    struct ActiveJob;

    void run();
    /// Under mutex_: the next piece of work of any job, or an empty function if none has any now.
    std::function<void()> next_work(std::shared_ptr<ActiveJob>& job, std::size_t& count);
    /// Under mutex_: completes `job` once its input is done and its last chunk has finished.
    void maybe_finish(const std::shared_ptr<ActiveJob>& job);
    void abort_all(std::exception_ptr error);

    const int threads_;
    const pid_t creator_;
    const std::uint64_t generation_;  // fork_generation() where the threads run
    std::function<void()> initializer_;

    std::mutex mutex_;
    std::condition_variable changed_;  // work arrived, room was made, or the engine is stopping
    std::deque<std::shared_ptr<ActiveJob>> jobs_;
    bool closed_ = false;
    bool terminating_ = false;
    bool joined_ = false;
    std::exception_ptr broken_;
    std::vector<std::thread> workers_;
    CallbackThread callbacks_;
};

}  // namespace zmp::detail
