#include "zmp/thread_pool.hpp"

#include "pool/thread_engine.hpp"
#include "runtime/identity.hpp"

namespace zmp {
namespace {

void check_owner(const std::shared_ptr<detail::ThreadEngine>& core) {
    if (!core) throw ValueError("the pool has been moved from");
    if (core->creator() != detail::this_process().pid()) {
        throw ValueError("a ThreadPool can only be used by the process that created it");
    }
}

}  // namespace

ThreadPool::ThreadPool() : ThreadPool(Initializing{}, cpu_count(), nullptr) {}

ThreadPool::ThreadPool(int processes) : ThreadPool(Initializing{}, processes, nullptr) {}

ThreadPool::ThreadPool(Initializing, int processes, std::function<void()> initializer)
    : core_(std::make_shared<detail::ThreadEngine>(processes, std::move(initializer))) {
    core_->start();
}

ThreadPool::~ThreadPool() {
    if (!core_ || core_->creator() != detail::this_process().pid()) return;
    try {
        core_->close();
        core_->join();
    } catch (...) {
    }
}

void ThreadPool::close() {
    check_owner(core_);
    core_->close();
}

void ThreadPool::terminate() {
    check_owner(core_);
    core_->terminate();
}

void ThreadPool::join() {
    check_owner(core_);
    core_->join();
}

int ThreadPool::processes() const {
    check_owner(core_);
    return core_->threads();
}

void ThreadPool::submit_job(detail::ThreadJob job) {
    check_owner(core_);
    core_->submit(std::move(job));
}

}  // namespace zmp
