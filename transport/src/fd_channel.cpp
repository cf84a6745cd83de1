#include "zmp/transport/fd_channel.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "socket_io.hpp"
#include "zmp/detail/deadline.hpp"
#include "zmp/detail/error_texts.hpp"
#include "zmp/errors.hpp"

namespace zmp::transport {
namespace {

// Every message starts with this header; the magic catches a desynchronised or foreign stream.
struct Header {
    std::uint64_t size;
    std::uint32_t nfds;
    std::uint32_t magic;
};
constexpr std::uint32_t kMagic = 0x7a6d7046;  // "zmpF"
using socket_io::kMaxFds;

}  // namespace

std::pair<FdChannel, FdChannel> FdChannel::pair() {
    int fds[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) throw_os_error("socketpair", errno);
    return {FdChannel(fds[0]), FdChannel(fds[1])};
}

FdChannel::FdChannel(FdChannel&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), max_message_(other.max_message_), broken_(other.broken_) {}

FdChannel& FdChannel::operator=(FdChannel&& other) noexcept {
    if (this != &other) {
        close();
        fd_ = std::exchange(other.fd_, -1);
        max_message_ = other.max_message_;
        broken_ = other.broken_;
    }
    return *this;
}

FdChannel::~FdChannel() { close(); }

int FdChannel::release() noexcept { return std::exchange(fd_, -1); }

void FdChannel::close() noexcept {
    if (fd_ >= 0) ::close(std::exchange(fd_, -1));
}

void FdChannel::send(const void* data, std::size_t size, std::span<const int> fds) {
    iovec part{const_cast<void*>(data), size};
    send(std::span<const iovec>(&part, 1), fds);
}

void FdChannel::send(std::span<const iovec> parts, std::span<const int> fds) {
    if (fd_ < 0) throw OSError(zmp::detail::texts::kHandleClosed, EBADF);
    if (fds.size() > kMaxFds) throw ValueError("too many file descriptors in one message");
    std::uint64_t total = 0;
    for (const iovec& p : parts) total += p.iov_len;
    if (total > max_message_) {
        throw ValueError("message of " + std::to_string(total) + " bytes exceeds the channel limit of " +
                         std::to_string(max_message_) + " bytes");
    }
    Header header{total, static_cast<std::uint32_t>(fds.size()), kMagic};
    std::vector<iovec> iov;
    iov.reserve(parts.size() + 1);
    iov.push_back({&header, sizeof header});
    iov.insert(iov.end(), parts.begin(), parts.end());
    socket_io::send_all(fd_, iov, fds);
}

bool FdChannel::recv(ChannelMessage& out) {
    out.fds.clear();
    out.size = 0;
    const auto size = recv_header(out.fds);
    if (!size) return false;
    try {
        if (!recv_body(*size, [&out](std::size_t, std::size_t needed) { return out.grow(needed); })) {
            for (int fd : out.fds) ::close(fd);
            out.fds.clear();
            out.size = 0;
            return false;
        }
    } catch (...) {
        for (int fd : out.fds) ::close(fd);
        out.fds.clear();
        out.size = 0;
        throw;
    }
    return true;
}

bool FdChannel::recv(const std::function<char*(std::size_t, std::size_t)>& storage, std::vector<int>& fds) {
    const std::size_t fds_before = fds.size();
    auto drop_fds = [&] {
        for (std::size_t i = fds_before; i < fds.size(); ++i) ::close(fds[i]);
        fds.resize(fds_before);
    };
    const auto size = recv_header(fds);
    if (!size) return false;
    try {
        if (!recv_body(*size, storage)) {
            drop_fds();
            return false;
        }
    } catch (...) {
        drop_fds();
        throw;
    }
    return true;
}

std::optional<std::size_t> FdChannel::recv_header(std::vector<int>& fds) {
    if (fd_ < 0) throw OSError(zmp::detail::texts::kHandleClosed, EBADF);
    if (broken_) throw ProtocolError("channel is unusable after an earlier framing error");
    const std::size_t fds_before = fds.size();
    auto drop_fds = [&] {
        for (std::size_t i = fds_before; i < fds.size(); ++i) ::close(fds[i]);
        fds.resize(fds_before);
    };

    // The header travels with the descriptors, so it is read with recvmsg.
    Header header{};
    std::size_t got = 0;
    while (got < sizeof header) {
        const ssize_t n = socket_io::recv_some(fd_, reinterpret_cast<char*>(&header) + got, sizeof header - got, fds);
        if (n == 0) {  // end of stream; a message the peer did not finish is dropped
            drop_fds();
            return std::nullopt;
        }
        got += static_cast<std::size_t>(n);
    }
    if (header.magic != kMagic || header.nfds != fds.size() - fds_before) {
        drop_fds();
        broken_ = true;
        throw ProtocolError("channel stream is corrupt (bad message header)");
    }
    if (header.size > max_message_) {
        drop_fds();
        broken_ = true;
        throw ProtocolError("bad message length: " + std::to_string(header.size) + " bytes exceeds the limit of " +
                            std::to_string(max_message_));
    }
    return static_cast<std::size_t>(header.size);
}

bool FdChannel::recv_body(std::size_t size, const std::function<char*(std::size_t, std::size_t)>& storage) {
    // The header's word sets nothing aside: the room starts small and doubles as bytes come.
    std::size_t room = std::min(size, kFirstRoom);
    char* data = storage(size, room);
    std::size_t have = 0;
    while (have < size) {
        if (have == room) {
            room = room > size / 2 ? size : 2 * room;
            data = storage(size, room);
        }
        const std::size_t want = room - have;
        const std::size_t got = socket_io::read_fully(fd_, data + have, want);
        have += got;
        if (got != want) return false;  // end of stream: a message the peer did not finish is dropped
    }
    return true;
}

bool FdChannel::poll(int timeout_ms) const {
    if (fd_ < 0) throw OSError(zmp::detail::texts::kHandleClosed, EBADF);
    return socket_io::wait_readable(fd_, timeout_ms < 0
                                             ? zmp::detail::Deadline::never()
                                             : zmp::detail::Deadline::after_ns(std::int64_t{timeout_ms} * 1'000'000));
}

}  // namespace zmp::transport

namespace zmp::transport {

Outbox::~Outbox() {
    for (auto& a : attached_)
        for (int fd : a.fds) ::close(fd);
}

void Outbox::send(std::span<const iovec> parts, std::span<const int> fds) {
    std::uint64_t total = 0;
    for (const iovec& p : parts) total += p.iov_len;
    if (sent_ > 0 && sent_ == pending_.size()) {
        pending_.clear();
        sent_ = 0;
    }
    if (!fds.empty()) {
        if (fds.size() > kMaxFds) throw ValueError("too many file descriptors in one message");
        Attached a{pending_.size(), {}};
        for (int fd : fds) {
            const int copy = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
            if (copy < 0) {
                for (int f : a.fds) ::close(f);
                throw_os_error("dup", errno);
            }
            a.fds.push_back(copy);
        }
        attached_.push_back(std::move(a));
    }
    const Header header{total, static_cast<std::uint32_t>(fds.size()), kMagic};
    pending_.append(reinterpret_cast<const char*>(&header), sizeof header);
    for (const iovec& p : parts) pending_.append(static_cast<const char*>(p.iov_base), p.iov_len);
    flush();
}

bool Outbox::flush() {
    while (sent_ < pending_.size()) {
        // A message with descriptors goes out in a write that starts at its first byte and
        // carries them; every other write stops short of such a message.
        std::size_t end = pending_.size();
        const Attached* carrying = nullptr;
        for (const Attached& a : attached_) {
            if (a.offset == sent_)
                carrying = &a;
            else if (a.offset > sent_) {
                end = std::min(end, a.offset);
                break;
            }
        }
        iovec iov{pending_.data() + sent_, end - sent_};
        msghdr msg{};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        std::vector<char> control;
        if (carrying != nullptr) {
            control.resize(CMSG_SPACE(sizeof(int) * carrying->fds.size()));
            msg.msg_control = control.data();
            msg.msg_controllen = control.size();
            cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
            cmsg->cmsg_level = SOL_SOCKET;
            cmsg->cmsg_type = SCM_RIGHTS;
            cmsg->cmsg_len = CMSG_LEN(sizeof(int) * carrying->fds.size());
            std::memcpy(CMSG_DATA(cmsg), carrying->fds.data(), sizeof(int) * carrying->fds.size());
        }
        ssize_t n = ::sendmsg(fd_, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0) {
            if (carrying != nullptr) {
                for (int fd : carrying->fds) ::close(fd);
                attached_.erase(attached_.begin() + (carrying - attached_.data()));
            }
            sent_ += static_cast<std::size_t>(n);
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return false;
        if (n < 0 && (errno == EPIPE || errno == ECONNRESET))
            throw OSError("the other end of the channel is closed", errno);
        throw_os_error("send on channel", errno);
    }
    pending_.clear();
    sent_ = 0;
    return true;
}

}  // namespace zmp::transport
