#include "zmp/pool.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include "pool/dispatcher.hpp"
#include "runtime/identity.hpp"

namespace zmp {
namespace detail {

OwnedFds::~OwnedFds() {
    for (int fd : fds_) ::close(fd);
}

std::shared_ptr<OwnedFds> owned(std::vector<int> fds) {
    return fds.empty() ? nullptr : std::make_shared<OwnedFds>(std::move(fds));
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

Pool Context::Pool() const { return zmp::Pool(PoolOptions{.context = method_}); }

Pool Context::Pool(int processes) const {
    // As Pool(n): Pool(0) is an error (Python's), only Pool() means cpu_count().
    return zmp::Pool(PoolOptions{.processes = processes == 0 ? -1 : processes, .context = method_});
}

Pool Context::Pool(PoolOptions options) const {
    options.context = method_;
    return zmp::Pool(std::move(options));
}

Pool::Pool(PoolOptions options, Initializer initializer) : terminate_on_exit_(options.terminate_on_exit) {
    const detail::PoolSettings settings{
        options.processes, options.maxtasksperchild, options.context,   options.max_retries,
        options.bind,      options.authkey,          options.heartbeat, options.heartbeat_timeout};
    core_ = std::make_shared<detail::PoolCore>(settings, initializer.function, std::move(initializer.args),
                                               initializer.present, std::move(initializer.fds));
    core_->start();
}

Pool::~Pool() {
    if (!core_ || core_->creator() != detail::this_process().pid()) return;
    try {
        if (terminate_on_exit_) {
            core_->terminate();
        } else {
            core_->close();
            core_->join();
        }
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

void Pool::submit_job(detail::Job job) {
    check_owner(core_);
    core_->submit(std::move(job));
}

ProcessPoolExecutor::~ProcessPoolExecutor() {
    try {
        shutdown(true);
    } catch (...) {
    }
}

void ProcessPoolExecutor::check_open() {
    std::lock_guard lock(mutex_);
    if (shut_down_) throw RuntimeError("cannot schedule new futures after shutdown");
}

void ProcessPoolExecutor::remember(std::shared_ptr<detail::ResultCore> result) {
    std::lock_guard lock(mutex_);
    // Forget what is done, so that a long-lived executor keeps a short list.
    std::erase_if(submitted_, [](const auto& weak) {
        auto alive = weak.lock();
        return !alive || alive->ready();
    });
    submitted_.push_back(std::move(result));
}

void ProcessPoolExecutor::shutdown(bool wait, bool cancel_futures) {
    std::vector<std::weak_ptr<detail::ResultCore>> submitted;
    {
        std::lock_guard lock(mutex_);
        if (!shut_down_) {
            shut_down_ = true;
            if (cancel_futures) submitted.swap(submitted_);
        }
    }
    for (auto& weak : submitted)
        if (auto result = weak.lock()) result->cancel_unstarted();
    if (pool_.core_ == nullptr || pool_.core_->creator() != detail::this_process().pid()) return;
    pool_.close();
    if (wait) pool_.join();
}

std::string Pool::endpoint() const {
    check_owner(core_);
    return core_->endpoint();
}

namespace detail {

std::size_t checked_chunksize(std::size_t chunksize) {
    if (chunksize < 1) throw ValueError("Chunksize must be 1+, not " + std::to_string(chunksize));
    return chunksize;
}

std::size_t default_chunksize(std::size_t items, int processes) {
    // Python's: divmod(len, 4 * processes), rounded up.
    // A pool of joined workers only may have none yet: chunks are sized as for one.
    const std::size_t per = 4 * static_cast<std::size_t>(std::max(1, processes));
    const std::size_t chunksize = items / per + (items % per != 0 ? 1 : 0);
    return chunksize == 0 ? 1 : chunksize;
}

std::size_t stream_buffer_limit(int processes) {
    // Items in flight or waiting for the consumer: enough to keep every worker busy.
    return std::max<std::size_t>(64, 16 * static_cast<std::size_t>(processes));
}

void prepare_progress(ResultCore& result, const MapOptions& options, std::size_t total) {
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

}  // namespace detail
}  // namespace zmp
