#pragma once
// The thread a pool runs its users' callbacks on (result callbacks, done-callbacks, progress), so
// that a slow callback never stalls the engine. It starts with the first callback and ends with
// stop(); a callback posted after that runs at once, in the caller.

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

namespace zmp::detail {

class CallbackThread {
public:
    CallbackThread() = default;
    CallbackThread(const CallbackThread&) = delete;
    CallbackThread& operator=(const CallbackThread&) = delete;
    ~CallbackThread();

    /// Runs `callback` on the thread (here, at once, once stop() has returned). On the thread,
    /// a callback's exception has nowhere to go: it is dropped.
    void post(std::function<void()> callback);
    /// Runs what was posted, then ends the thread. Idempotent.
    void stop();

private:
    void loop();

    std::mutex mutex_;
    std::condition_variable ready_;
    std::deque<std::function<void()>> callbacks_;
    std::thread thread_;
    std::uint64_t generation_ = 0;  // fork_generation() of the process that started the thread
    bool stopping_ = false;
    bool stopped_ = false;
};

}  // namespace zmp::detail
