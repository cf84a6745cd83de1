#include "pool/callback_thread.hpp"

#include "base/fork.hpp"

namespace zmp::detail {

CallbackThread::~CallbackThread() { stop(); }

void CallbackThread::post(std::function<void()> callback) {
    {
        std::lock_guard lock(mutex_);
        if (!stopped_) {
            callbacks_.push_back(std::move(callback));
            if (!thread_.joinable() && !stopping_) {
                thread_ = std::thread([this] { loop(); });
                generation_ = fork_generation();
            }
            if (thread_.joinable()) {
                ready_.notify_one();
                return;
            }
            callback = std::move(callbacks_.back());
            callbacks_.pop_back();
        }
    }
    callback();  // the thread has finished: run it here
}

void CallbackThread::stop() {
    std::thread thread;
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
        thread = std::move(thread_);
    }
    ready_.notify_all();
    if (thread.joinable()) {
        if (generation_ == fork_generation())
            thread.join();
        else
            (void)new std::thread(std::move(thread));  // a forked child's copy: that thread is not here
    }
    std::lock_guard lock(mutex_);
    stopped_ = true;
}

void CallbackThread::loop() {
    std::unique_lock lock(mutex_);
    for (;;) {
        ready_.wait(lock, [this] { return !callbacks_.empty() || stopping_; });
        if (callbacks_.empty()) break;
        auto callback = std::move(callbacks_.front());
        callbacks_.pop_front();
        lock.unlock();
        try {
            callback();
        } catch (...) {
            // A callback's exception has nowhere to go; it must not take the pool down.
        }
        lock.lock();
    }
    stopped_ = true;
}

}  // namespace zmp::detail
