#pragma once
// A wake-up for a thread that sleeps in poll(2) or zmq_poll: an eventfd. notify() makes fd()
// readable from any thread (and from a signal handler); the sleeper drains it when it wakes. The
// one eventfd wake-up of zmp: the ZAP handler's thread here, the broker's loop, the pool's
// dispatcher and the output capture in core (core/src/base/wake_fd.hpp names it for core).
//
//     WakeFd wake;                          // the loop polls wake.fd() beside its sockets
//     wake.notify();                        // any thread: the loop comes round
//     if (readable) wake.drain();           // the loop, on waking

namespace zmp::transport {

class WakeFd {
public:
    /// OSError if the kernel has no eventfd to give.
    WakeFd();
    ~WakeFd();
    WakeFd(const WakeFd&) = delete;
    WakeFd& operator=(const WakeFd&) = delete;

    int fd() const noexcept { return fd_; }
    /// Async-signal-safe; never blocks (a counter that is already high stays readable).
    void notify() const noexcept;
    /// Reads the counter back to zero; the fd is no longer readable until the next notify().
    void drain() const noexcept;

private:
    int fd_ = -1;
};

}  // namespace zmp::transport
