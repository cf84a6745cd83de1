#pragma once
// Reads and writes on a connected Unix stream socket that may carry descriptors (SCM_RIGHTS):
// the system-call loops under FdChannel and ShmChannel, written once.

#include <sys/types.h>
#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "zmp/detail/deadline.hpp"

namespace zmp::transport::socket_io {

/// Most descriptors one message may carry: below the kernel's SCM_MAX_FD (253).
inline constexpr std::uint32_t kMaxFds = 250;

/// Writes every byte of `iov` (gathered, never copied), `fds` attached to the first write; blocks
/// while the socket is full. Empty parts are allowed. `iov` is consumed (its entries are advanced).
/// Throws OSError: "the other end of the channel is closed" (EPIPE, ECONNRESET) or the system error.
void send_all(int fd, std::vector<iovec>& iov, std::span<const int> fds = {});

/// One recvmsg of up to `size` bytes; descriptors that came with them are appended to `fds` (close
/// on exec). Returns the count read, 0 at end of stream (a reset connection is an end of stream
/// too), or -1 when `flags` has MSG_DONTWAIT and nothing is there. EINTR is retried. Throws
/// OSError for other failures.
ssize_t recv_some(int fd, void* data, std::size_t size, std::vector<int>& fds, int flags = 0);

/// Looks at up to `size` waiting bytes without taking them (MSG_PEEK; descriptors stay queued).
/// Returns the count, 0 at end of stream, -1 when `flags` has MSG_DONTWAIT and nothing is there.
ssize_t peek_some(int fd, void* data, std::size_t size, int flags = 0);

/// Reads exactly `size` bytes unless the stream ends first; returns the count read. Throws OSError.
std::size_t read_fully(int fd, char* data, std::size_t size);

/// Waits until `fd` is readable or has hung up, or `deadline` passes; EINTR resumes with what is
/// left. True if it is readable.
bool wait_readable(int fd, const zmp::detail::Deadline& deadline);

}  // namespace zmp::transport::socket_io
