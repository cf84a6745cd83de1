// ResultCore: the untyped half of a pool job's result (zmp/detail/pool_results.hpp).
#include "zmp/detail/pool_results.hpp"

namespace zmp::detail {

ResultCore::~ResultCore() = default;

bool ResultCore::ready() const {
    std::lock_guard lock(mutex_);
    return ready_;
}

void ResultCore::wait() const {
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [this] { return ready_; });
}

bool ResultCore::wait_for(Timeout timeout) const {
    const Deadline deadline = Deadline::after(timeout);
    std::unique_lock lock(mutex_);
    if (deadline.is_never()) {
        changed_.wait(lock, [this] { return ready_; });
        return true;
    }
    return changed_.wait_until(lock, *deadline.time(), [this] { return ready_; });
}

std::exception_ptr ResultCore::error() const {
    std::lock_guard lock(mutex_);
    return error_;
}

void ResultCore::attach(std::weak_ptr<ResultHost> host) {
    std::lock_guard lock(mutex_);
    host_ = std::move(host);
}

void ResultCore::add_done_callback(std::function<void()> callback) {
    std::shared_ptr<ResultHost> host;
    {
        std::lock_guard lock(mutex_);
        if (!ready_) {
            callbacks_.push_back(std::move(callback));
            return;
        }
        host = host_.lock();
    }
    if (host)
        host->post_callback(std::move(callback));
    else
        callback();
}

void ResultCore::notify_on_done(CompletionSignal signal) {
    {
        std::lock_guard lock(mutex_);
        if (!ready_) {
            // Waits that timed out leave their signals behind: drop them, so that repeated
            // waits on a long task cost nothing lasting.
            std::erase_if(signals_, [](const CompletionSignal& s) { return s.unwatched(); });
            signals_.push_back(std::move(signal));
            return;
        }
    }
    signal.notify();
}

bool ResultCore::cancel() {
    std::shared_ptr<ResultHost> host;
    {
        std::unique_lock lock(mutex_);
        if (cancelled_) return true;
        if (started_ || ready_) return false;
        cancelled_ = true;
        host = host_.lock();
        complete_locked(lock, std::make_exception_ptr(CancelledError("the task was cancelled before it started")));
    }
    if (host) host->withdraw();
    return true;
}

bool ResultCore::cancelled() const {
    std::lock_guard lock(mutex_);
    return cancelled_;
}

bool ResultCore::running() const {
    std::lock_guard lock(mutex_);
    return started_ && !ready_;
}

bool ResultCore::start() {
    std::lock_guard lock(mutex_);
    if (cancelled_) return false;
    started_ = true;
    return true;
}

void ResultCore::set_progress(std::function<void(std::size_t, std::size_t)> progress, std::size_t total) {
    std::lock_guard lock(mutex_);
    progress_ = std::move(progress);
    total_ = total;
}

void ResultCore::report_progress_locked(bool final) {
    if (!progress_) return;
    const auto now = std::chrono::steady_clock::now();
    if (!final && now - last_progress_ < std::chrono::milliseconds(50)) return;
    last_progress_ = now;
    if (auto host = host_.lock()) {
        host->post_callback([progress = progress_, done = done_, total = total_] { progress(done, total); });
    }
}

void ResultCore::on_results(std::size_t first, const msgpack::object& results) {
    std::lock_guard lock(mutex_);
    store(first, results);
    done_ += results.via.array.size;
    report_progress_locked(false);
    notify_items();
}

void ResultCore::on_chunk_failed(std::size_t, std::size_t count, std::exception_ptr error) {
    std::lock_guard lock(mutex_);
    if (!first_failure_) first_failure_ = std::move(error);
    done_ += count;
    report_progress_locked(false);
}

void ResultCore::on_input_failed(std::exception_ptr error, std::size_t) {
    std::lock_guard lock(mutex_);
    if (!first_failure_) first_failure_ = std::move(error);
}

void ResultCore::on_all_done() {
    std::unique_lock lock(mutex_);
    complete_locked(lock, first_failure_);
}

void ResultCore::abort(std::exception_ptr error) {
    std::unique_lock lock(mutex_);
    if (ready_) return;
    complete_locked(lock, std::move(error));
}

bool ResultCore::wants_more(std::size_t) const { return true; }

void ResultCore::wake_host() const {
    std::shared_ptr<ResultHost> host;
    {
        std::lock_guard lock(mutex_);
        host = host_.lock();
    }
    if (host) host->wake();
}

void ResultCore::complete_locked(std::unique_lock<std::mutex>& lock, std::exception_ptr error) {
    if (ready_) return;
    ready_ = true;
    error_ = std::move(error);
    if (total_ == 0) total_ = done_;
    report_progress_locked(true);
    auto callbacks = std::move(callbacks_);
    auto signals = std::move(signals_);
    auto host = host_.lock();
    lock.unlock();
    changed_.notify_all();
    for (auto& signal : signals) signal.notify();
    for (auto& callback : callbacks) {
        if (host)
            host->post_callback(std::move(callback));
        else
            callback();
    }
}

}  // namespace zmp::detail
