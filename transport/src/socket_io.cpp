#include "socket_io.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>

#include "zmp/errors.hpp"

namespace zmp::transport::socket_io {

void send_all(int fd, std::vector<iovec>& iov, std::span<const int> fds) {
    std::vector<char> control;
    if (!fds.empty()) control.resize(CMSG_SPACE(sizeof(int) * fds.size()));
    std::size_t first = 0;  // index of the first iovec not yet fully written
    while (first < iov.size() && iov[first].iov_len == 0) ++first;
    bool control_sent = fds.empty();
    while (first < iov.size() || !control_sent) {
        msghdr msg{};
        msg.msg_iov = iov.data() + first;
        msg.msg_iovlen = std::min<std::size_t>(iov.size() - first, IOV_MAX);
        if (!control_sent) {
            msg.msg_control = control.data();
            msg.msg_controllen = control.size();
            cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
            cmsg->cmsg_level = SOL_SOCKET;
            cmsg->cmsg_type = SCM_RIGHTS;
            cmsg->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
            std::memcpy(CMSG_DATA(cmsg), fds.data(), sizeof(int) * fds.size());
        }
        ssize_t n = ::sendmsg(fd, &msg, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EPIPE || errno == ECONNRESET) throw OSError("the other end of the channel is closed", errno);
            throw_os_error("send on channel", errno);
        }
        control_sent = true;
        auto left = static_cast<std::size_t>(n);
        while (first < iov.size() && left >= iov[first].iov_len) {
            left -= iov[first].iov_len;
            ++first;
        }
        if (left > 0) {
            iov[first].iov_base = static_cast<char*>(iov[first].iov_base) + left;
            iov[first].iov_len -= left;
        }
    }
}

ssize_t recv_some(int fd, void* data, std::size_t size, std::vector<int>& fds, int flags) {
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)];
    for (;;) {
        iovec iov{data, size};
        msghdr msg{};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control;
        msg.msg_controllen = sizeof control;
        ssize_t n = ::recvmsg(fd, &msg, flags | MSG_CMSG_CLOEXEC);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == ECONNRESET) return 0;
            if ((flags & MSG_DONTWAIT) != 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return -1;
            throw_os_error("receive on channel", errno);
        }
        for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
            if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
                std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                const int* received = reinterpret_cast<const int*>(CMSG_DATA(c));
                fds.insert(fds.end(), received, received + count);
            }
        }
        return n;
    }
}

ssize_t peek_some(int fd, void* data, std::size_t size, int flags) {
    for (;;) {
        ssize_t n = ::recv(fd, data, size, flags | MSG_PEEK);
        if (n >= 0) return n;
        if (errno == EINTR) continue;
        if (errno == ECONNRESET) return 0;
        if ((flags & MSG_DONTWAIT) != 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return -1;
        throw_os_error("receive on channel", errno);
    }
}

std::size_t read_fully(int fd, char* data, std::size_t size) {
    std::size_t done = 0;
    while (done < size) {
        ssize_t n = ::read(fd, data + done, size - done);
        if (n > 0) {
            done += static_cast<std::size_t>(n);
        } else if (n == 0 || errno == ECONNRESET) {
            break;
        } else if (errno != EINTR) {
            throw_os_error("read from channel", errno);
        }
    }
    return done;
}

bool wait_readable(int fd, const zmp::detail::Deadline& deadline) {
    pollfd p{fd, POLLIN, 0};
    for (;;) {
        const int rc = ::poll(&p, 1, deadline.poll_ms());
        if (rc > 0) return true;
        if (rc == 0 && deadline.passed()) return false;
        if (rc < 0 && errno != EINTR) throw_os_error("poll on channel", errno);
    }
}

}  // namespace zmp::transport::socket_io
