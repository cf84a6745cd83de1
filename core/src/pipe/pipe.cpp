#include "zmp/pipe.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <functional>
#include <mutex>

#include "travel/fd_passing.hpp"
#include "zmp/transport/fd_channel.hpp"
#include "zmp/detail/error_texts.hpp"

namespace zmp {
namespace detail {

struct ConnectionState {
    ConnectionState(transport::FdChannel ch, bool r, bool w) : channel(std::move(ch)), readable(r), writable(w) {}
    transport::FdChannel channel;
    const bool readable;
    const bool writable;
    std::mutex send_mutex;
    std::mutex recv_mutex;
    transport::ChannelMessage recv_buffer;  // reused by typed recv (under recv_mutex)
};

namespace {

// A Connection's token on the wire: flags (readable, writable) then the descriptor's index.
struct Token {
    std::uint8_t flags;
    std::uint32_t index;
};

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
    Token token{static_cast<std::uint8_t>((st.readable ? 1 : 0) | (st.writable ? 2 : 0)),
                static_cast<std::uint32_t>(collector->add(st.channel.fd()))};
    std::string bytes(5, '\0');
    bytes[0] = static_cast<char>(token.flags);
    std::memcpy(bytes.data() + 1, &token.index, sizeof token.index);
    return bytes;
}

Connection connection_from_token(const msgpack::object& obj) {
    if (obj.type != msgpack::type::EXT || obj.via.ext.type() != 0x5a || obj.via.ext.size != 5) {
        throw ProtocolError("received a value that is not a Connection where one was expected");
    }
    FdSupply* supply = FdSupply::current();
    Token token{};
    token.flags = static_cast<std::uint8_t>(obj.via.ext.data()[0]);
    std::memcpy(&token.index, obj.via.ext.data() + 1, sizeof token.index);
    const int fd = supply ? supply->take(token.index) : -1;
    if (fd < 0) throw ProtocolError("a Connection arrived without its descriptor");
    return Connection(
        std::make_shared<ConnectionState>(transport::FdChannel(fd), (token.flags & 1) != 0, (token.flags & 2) != 0));
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
    return Connection(std::make_shared<ConnectionState>(std::move(channel), true, true));
}

transport::FdChannel& channel_of(const Connection& conn) { return open_state(conn.state()).channel; }

}  // namespace detail

using detail::ConnectionState;

std::pair<Connection, Connection> Pipe(bool duplex) {
    auto [a, b] = transport::FdChannel::pair();
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

int Connection::fileno() const { return detail::open_state(state_).channel.fd(); }

}  // namespace zmp
