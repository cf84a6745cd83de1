#include "zmp/transport/wake_fd.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>

#include "zmp/errors.hpp"

namespace zmp::transport {

WakeFd::WakeFd() : fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
    if (fd_ < 0) throw_os_error("eventfd", errno);
}

WakeFd::~WakeFd() { ::close(fd_); }

void WakeFd::notify() const noexcept {
    const std::uint64_t one = 1;
    // EAGAIN means the counter is at its maximum: the fd is readable anyway.
    (void)!::write(fd_, &one, sizeof one);
}

void WakeFd::drain() const noexcept {
    std::uint64_t count;
    (void)!::read(fd_, &count, sizeof count);
}

}  // namespace zmp::transport
