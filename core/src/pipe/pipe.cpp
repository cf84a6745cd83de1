#include "zmp/pipe.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <string_view>

#include "pipe/connection.hpp"
#include "travel/fd_passing.hpp"
#include "zmp/detail/error_texts.hpp"
#include "zmp/transport/shm_channel.hpp"

namespace zmp {
namespace detail {

// A Connection's end: a shared-memory channel (Pipe on one host), or a bare socket (the pool's
// links, and every Pipe when ZMP_PIPE=socket), which the same ShmChannel carries without a ring.
struct ConnectionState {
    ConnectionState(transport::ShmChannel ch, bool r, bool w) : channel(std::move(ch)), readable(r), writable(w) {}
    transport::ShmChannel channel;
    const bool readable;
    const bool writable;
    std::mutex send_mutex;
    std::mutex recv_mutex;
    transport::ChannelMessage recv_buffer;  // reused by typed recv (under recv_mutex)
};

namespace {

// A Connection's token on the wire: flags, the socket's index among the message's descriptors,
// and, for an end with a ring, the segment's index.
enum TokenFlags : std::uint8_t { kReadable = 1, kWritable = 2, kHasRing = 4, kSideOne = 8 };
constexpr std::size_t kSocketToken = 5;
constexpr std::size_t kRingToken = 9;

ConnectionState& open_state(const std::shared_ptr<ConnectionState>& state) {
    if (!state || !state->channel.is_open()) throw OSError(detail::texts::kHandleClosed, EBADF);
    return *state;
}

ConnectionState& for_reading(const std::shared_ptr<ConnectionState>& state) {
    ConnectionState& st = open_state(state);
    if (!st.readable) throw OSError("connection is write-only", EBADF);
    return st;
}

ConnectionState& for_writing(const std::shared_ptr<ConnectionState>& state) {
    ConnectionState& st = open_state(state);
    if (!st.writable) throw OSError("connection is read-only", EBADF);
    return st;
}

int timeout_ms(Timeout timeout) {
    if (!timeout) return -1;
    double ms = std::ceil(timeout->count() * 1000.0);
    if (ms <= 0) return 0;
    return ms > 2e9 ? 2000000000 : static_cast<int>(ms);
}

}  // namespace

std::string connection_token(const Connection& conn) {
    FdCollector* collector = FdCollector::current();
    if (collector == nullptr) {
        throw ValueError("a Connection can travel only through a Pipe or as a Process argument");
    }
    ConnectionState& st = open_state(conn.state());
    const bool ring = st.channel.has_ring();
    const auto flags =
        static_cast<std::uint8_t>((st.readable ? kReadable : 0) | (st.writable ? kWritable : 0) |
                                  (ring ? kHasRing : 0) | (st.channel.segment_side() == 1 ? kSideOne : 0));
    std::string bytes(ring ? kRingToken : kSocketToken, '\0');
    bytes[0] = static_cast<char>(flags);
    const auto socket_index = static_cast<std::uint32_t>(collector->add(st.channel.socket_fd()));
    std::memcpy(bytes.data() + 1, &socket_index, sizeof socket_index);
    if (ring) {
        const auto segment_index = static_cast<std::uint32_t>(collector->add(st.channel.segment_fd()));
        std::memcpy(bytes.data() + 5, &segment_index, sizeof segment_index);
    }
    return bytes;
}

Connection connection_from_token(const msgpack::object& obj) {
    if (obj.type != msgpack::type::EXT || obj.via.ext.type() != 0x5a || obj.via.ext.size < 1) {
        throw ProtocolError("received a value that is not a Connection where one was expected");
    }
    const auto flags = static_cast<std::uint8_t>(obj.via.ext.data()[0]);
    const bool ring = (flags & kHasRing) != 0;
    if (obj.via.ext.size != (ring ? kRingToken : kSocketToken) || (flags & ~0x0f) != 0) {
        throw ProtocolError("received a value that is not a Connection where one was expected");
    }
    FdSupply* supply = FdSupply::current();
    auto take = [&](std::size_t offset) {
        std::uint32_t index = 0;
        std::memcpy(&index, obj.via.ext.data() + offset, sizeof index);
        return supply ? supply->take(index) : -1;
    };
    transport::FdChannel socket(take(1));
    if (!socket.is_open()) throw ProtocolError("a Connection arrived without its descriptor");
    auto adopt = [&](transport::ShmChannel channel) {
        return Connection(
            std::make_shared<ConnectionState>(std::move(channel), (flags & kReadable) != 0, (flags & kWritable) != 0));
    };
    if (!ring) return adopt(transport::ShmChannel(std::move(socket)));
    const int segment = take(5);
    if (segment < 0) throw ProtocolError("a Connection arrived without its shared-memory segment");
    return adopt(transport::ShmChannel(std::move(socket), segment, (flags & kSideOne) != 0 ? 1 : 0));
}

struct FdCapture::Collector {
    FdCollector collector;
};

FdCapture::FdCapture() : collector_(std::make_unique<Collector>()) {}
FdCapture::~FdCapture() = default;

std::vector<int> FdCapture::take() {
    std::vector<int> owned;
    for (int fd : collector_->collector.fds()) {
        const int copy = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
        if (copy < 0) {
            for (int f : owned) ::close(f);
            throw_os_error("dup", errno);
        }
        owned.push_back(copy);
    }
    return owned;
}

Connection connection_from_channel(transport::FdChannel channel) {
    return Connection(std::make_shared<ConnectionState>(transport::ShmChannel(std::move(channel)), true, true));
}

transport::FdChannel& channel_of(const Connection& conn) {
    ConnectionState& st = open_state(conn.state());
    if (st.channel.has_ring()) throw ValueError("this Connection is not a bare socket channel");
    return st.channel.socket();
}

}  // namespace detail

using detail::ConnectionState;

namespace {

// ZMP_PIPE=socket makes Pipe() carry its messages over the socket pair alone, as connections that
// cross hosts will (for comparisons, and to test that path).
bool pipes_use_sockets() {
    const char* value = std::getenv("ZMP_PIPE");
    return value != nullptr && std::string_view(value) == "socket";
}

}  // namespace

std::pair<Connection, Connection> Pipe(bool duplex) {
    auto [a, b] = pipes_use_sockets() ? [] {
        auto [x, y] = transport::FdChannel::pair();
        return std::pair{transport::ShmChannel(std::move(x)), transport::ShmChannel(std::move(y))};
    }()
                                      : transport::ShmChannel::pair();
    return {Connection(std::make_shared<ConnectionState>(std::move(a), true, duplex)),
            Connection(std::make_shared<ConnectionState>(std::move(b), duplex, true))};
}

std::shared_ptr<void> Connection::begin_send_value() const {
    (void)detail::for_writing(state_);
    return std::make_shared<detail::FdCollector>();
}

void Connection::finish_send_value(void* fd_scope, const char* data, std::size_t size) {
    ConnectionState& st = detail::for_writing(state_);
    const auto& fds = static_cast<detail::FdCollector*>(fd_scope)->fds();
    std::lock_guard lock(st.send_mutex);
    iovec part{const_cast<char*>(data), size};
    st.channel.send(std::span<const iovec>(&part, 1), fds);
}

Connection::ReceivedValue Connection::receive_value() {
    ConnectionState& st = detail::for_reading(state_);
    std::lock_guard lock(st.recv_mutex);
    transport::ChannelMessage& message = st.recv_buffer;
    if (!st.channel.recv(message)) throw EOFError("the other end of the connection is closed");
    // The supply owns the descriptors from here on, even if decoding fails.
    auto supply = std::make_shared<detail::FdSupply>(std::move(message.fds));
    message.fds.clear();
    // decode() copies what it keeps, so the buffer is free for the next message afterwards.
    return ReceivedValue{transport::decode(message.data.get(), message.size), std::move(supply)};
}

void Connection::send_bytes(const void* data, std::size_t size) {
    ConnectionState& st = detail::for_writing(state_);
    std::lock_guard lock(st.send_mutex);
    st.channel.send(data, size);
}

void Connection::send_bytes(std::string_view bytes) { send_bytes(bytes.data(), bytes.size()); }

void Connection::send_bytes(std::string_view buffer, std::size_t offset, std::optional<std::size_t> size) {
    if (offset > buffer.size()) throw ValueError("buffer length < offset");
    const std::size_t count = size.value_or(buffer.size() - offset);
    if (count > buffer.size() - offset) throw ValueError("buffer length < offset + size");
    send_bytes(buffer.data() + offset, count);
}

namespace {

// Receives one message into whatever `storage` provides; raw-byte receivers drop descriptors.
void receive_raw(ConnectionState& st, const std::function<char*(std::size_t, std::size_t)>& storage) {
    std::vector<int> fds;
    bool got;
    {
        std::lock_guard lock(st.recv_mutex);
        got = st.channel.recv(storage, fds);
    }
    for (int fd : fds) ::close(fd);
    if (!got) throw EOFError("the other end of the connection is closed");
}

}  // namespace

std::string Connection::recv_bytes(std::optional<std::size_t> max_length) {
    ConnectionState& st = detail::for_reading(state_);
    std::string bytes;
    bool too_long = false;
    receive_raw(st, [&](std::size_t announced, std::size_t needed) {
        too_long = max_length && announced > *max_length;
        bytes.resize(needed);  // the message lands in the returned string, growing as it arrives
        return bytes.data();
    });
    if (too_long) {
        st.channel.close();  // Python leaves the connection unusable after a bad length
        throw ProtocolError("bad message length: " + std::to_string(bytes.size()) + " bytes exceeds maxlength " +
                            std::to_string(*max_length));
    }
    return bytes;
}

std::size_t Connection::recv_bytes_into(std::span<std::byte> buffer, std::size_t offset) {
    if (offset > buffer.size()) throw ValueError("offset is larger than the buffer");
    ConnectionState& st = detail::for_reading(state_);
    std::string overflow;
    std::size_t received = 0;
    receive_raw(st, [&](std::size_t announced, std::size_t needed) {
        received = announced;
        if (announced <= buffer.size() - offset) return reinterpret_cast<char*>(buffer.data() + offset);
        overflow.resize(needed);
        return overflow.data();
    });
    if (received > buffer.size() - offset) throw BufferTooShort(std::move(overflow));
    return received;
}

bool Connection::poll(Timeout timeout) const {
    return detail::for_reading(state_).channel.poll(detail::timeout_ms(timeout));
}

void Connection::close() {
    if (state_) state_->channel.close();
}

bool Connection::closed() const { return !state_ || !state_->channel.is_open(); }

bool Connection::readable() const { return state_ && state_->readable; }

bool Connection::writable() const { return state_ && state_->writable; }

int Connection::fileno() const { return detail::open_state(state_).channel.readiness_fd(); }

}  // namespace zmp
