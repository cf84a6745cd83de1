#include "zmp/pool.hpp"

#include <unistd.h>

#include <cstdio>

#include "pool/dispatcher.hpp"
#include "runtime/identity.hpp"

namespace zmp {
namespace detail {

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
    if (!timeout) {
        wait();
        return true;
    }
    std::unique_lock lock(mutex_);
    const auto limit = std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::max(*timeout, Seconds(0)));
    return changed_.wait_for(lock, limit, [this] { return ready_; });
}

std::exception_ptr ResultCore::error() const {
    std::lock_guard lock(mutex_);
    return error_;
}

void ResultCore::attach(std::shared_ptr<PoolCore> pool) {
    std::lock_guard lock(mutex_);
    pool_ = pool;
}

void ResultCore::add_done_callback(std::function<void()> callback) {
    std::shared_ptr<PoolCore> pool;
    {
        std::lock_guard lock(mutex_);
        if (!ready_) {
            callbacks_.push_back(std::move(callback));
            return;
        }
        pool = pool_.lock();
    }
    if (pool)
        pool->post_callback(std::move(callback));
    else
        callback();
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
    if (auto pool = pool_.lock()) {
        pool->post_callback([progress = progress_, done = done_, total = total_] { progress(done, total); });
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

void ResultCore::wake_pool() const {
    std::shared_ptr<PoolCore> pool;
    {
        std::lock_guard lock(mutex_);
        pool = pool_.lock();
    }
    if (pool) pool->wake();
}

void ResultCore::complete_locked(std::unique_lock<std::mutex>& lock, std::exception_ptr error) {
    if (ready_) return;
    ready_ = true;
    error_ = std::move(error);
    if (total_ == 0) total_ = done_;
    report_progress_locked(true);
    auto callbacks = std::move(callbacks_);
    auto pool = pool_.lock();
    lock.unlock();
    changed_.notify_all();
    for (auto& callback : callbacks) {
        if (pool)
            pool->post_callback(std::move(callback));
        else
            callback();
    }
}

}  // namespace detail

namespace {

void check_owner(const std::shared_ptr<detail::PoolCore>& core) {
    if (!core) throw ValueError("the pool has been moved from");
    if (core->creator() != detail::this_process().pid()) {
        throw ValueError("a Pool can only be used by the process that created it");
    }
}

}  // namespace

std::function<void(std::size_t, std::size_t)> progress_bar(std::string label) {
    if (!::isatty(2)) return [](std::size_t, std::size_t) {};
    const auto started = std::chrono::steady_clock::now();
    return [label = std::move(label), started](std::size_t done, std::size_t total) {
        constexpr int kWidth = 30;
        const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
        const double fraction = total > 0 ? static_cast<double>(done) / static_cast<double>(total) : 0.0;
        const int filled = static_cast<int>(fraction * kWidth);
        std::string bar(static_cast<std::size_t>(filled), '#');
        bar.append(static_cast<std::size_t>(kWidth - filled), '.');
        std::fprintf(stderr, "\r%s%s[%s] %3d%% %zu/%zu %.1fs", label.c_str(), label.empty() ? "" : " ", bar.c_str(),
                     static_cast<int>(fraction * 100), done, total, elapsed);
        if (total > 0 && done >= total) std::fputc('\n', stderr);
        std::fflush(stderr);
    };
}

Pool::Pool(int processes) : Pool(PoolOptions{.processes = processes == 0 ? -1 : processes}) {}

Pool::Pool(PoolOptions options) : Pool(std::move(options), Initializer{}) {}

Pool::Pool(PoolOptions options, Initializer initializer) {
    core_ = std::make_shared<detail::PoolCore>(options, initializer.function, std::move(initializer.args),
                                               initializer.present, std::move(initializer.fds));
    core_->start();
}

Pool::~Pool() {
    if (!core_ || core_->creator() != detail::this_process().pid()) return;
    try {
        core_->close();
        core_->join();
    } catch (...) {
    }
}

void Pool::close() {
    check_owner(core_);
    core_->close();
}

void Pool::terminate() {
    check_owner(core_);
    core_->terminate();
}

void Pool::join() {
    check_owner(core_);
    core_->join();
}

int Pool::processes() const {
    check_owner(core_);
    return core_->processes();
}

std::size_t Pool::checked_chunksize(std::size_t chunksize) {
    if (chunksize < 1) throw ValueError("Chunksize must be 1+, not " + std::to_string(chunksize));
    return chunksize;
}

std::size_t Pool::default_chunksize(std::size_t items) const {
    // Python's: divmod(len, 4 * processes), rounded up.
    const std::size_t per = 4 * static_cast<std::size_t>(core_->processes());
    const std::size_t chunksize = items / per + (items % per != 0 ? 1 : 0);
    return chunksize == 0 ? 1 : chunksize;
}

std::size_t Pool::stream_buffer_limit() const {
    // Items in flight or waiting for the consumer: enough to keep every worker busy.
    return std::max<std::size_t>(64, 16 * static_cast<std::size_t>(core_->processes()));
}

void Pool::prepare_progress(detail::ResultCore& result, const MapOptions& options, std::size_t total) {
    if (options.progress && options.progress_bar) {
        auto bar = progress_bar();
        result.set_progress(
            [user = options.progress, bar](std::size_t done, std::size_t all) {
                user(done, all);
                bar(done, all);
            },
            total);
    } else if (options.progress) {
        result.set_progress(options.progress, total);
    } else if (options.progress_bar && ::isatty(2)) {
        result.set_progress(progress_bar(), total);
    }
}

void Pool::submit_job(detail::Job job) {
    check_owner(core_);
    core_->submit(std::move(job));
}

}  // namespace zmp
