#pragma once
// zmp::Pipe and zmp::Connection: Python's multiprocessing.Pipe in C++.
//
// A Pipe is a pair of connected ends on this host. Messages go through shared memory (a ring per
// direction, in an unnamed segment that travels with the ends): a reader that is waiting spins
// briefly on the ring, so a round trip costs about a microsecond, then sleeps in the kernel, so
// an idle reader costs nothing. A Unix socket pair stays beside the rings: it carries what does
// not fit (descriptors, a writer the reader does not keep up with) and gives Python's
// end-of-stream rule: recv() raises EOFError once every copy of the other end, in every process,
// is closed, which includes the death of the process that held it; a message the peer did not
// finish is dropped, never delivered in part. As in Python, a parent that hands one end to a
// child should close its own copy of that end, or it will never see EOF. (ZMP_PIPE=socket in the
// environment makes new Pipes use the socket pair alone.)
//
//     auto [parent_end, child_end] = zmp::Pipe();
//     zmp::Process p([c = child_end]() mutable { c.send(std::string("hello")); });
//     p.start(); child_end.close();
//     std::string s = parent_end.recv<std::string>();
//
// Values travel as msgpack: any type with a msgpack adaptor (arithmetic types, std::string,
// standard containers, std::optional, tuples, MSGPACK_DEFINE'd structs). A Connection may itself
// be sent through a Pipe (its descriptors are passed along) and keeps working on the other side.
//
// Connection is a handle: copies in one process share one end, and close() closes it for all of
// them. A forked child has its own copy. One thread may send while another receives; concurrent
// senders (or receivers) on the same end, in one process or several, take turns, so messages are
// never interleaved.

#include <msgpack.hpp>

#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "zmp/errors.hpp"
#include "zmp/function.hpp"
#include "zmp/timeout.hpp"
#include "zmp/transport/codec.hpp"

namespace zmp {

namespace detail {
struct ConnectionState;
}

class Connection {
public:
    /// An empty handle; every operation on it raises OSError("handle is closed").
    Connection() = default;

    /// Sends one value (msgpack). Serialization happens here and its errors are raised here.
    /// Errors: OSError if closed, read-only, or the peer is gone.
    template <class T>
    void send(const T& value) {
        msgpack::sbuffer buffer;
        std::shared_ptr<void> fd_scope = begin_send_value();
        msgpack::pack(buffer, value);
        finish_send_value(fd_scope.get(), buffer.data(), buffer.size());
    }

    /// Receives one value sent with send(). Errors: EOFError when the peer closed and nothing is
    /// left; ProtocolError if the message does not hold a T; OSError if closed or write-only.
    template <class T>
    T recv() {
        ReceivedValue message = receive_value();
        return transport::convert<T>(message.handle.get());
    }

    /// Sends raw bytes as one message (0 bytes is a message too).
    void send_bytes(std::string_view bytes);
    void send_bytes(const void* data, std::size_t size);
    /// Python's send_bytes(buf, offset, size): ValueError for an offset or size outside `buf`.
    void send_bytes(std::string_view buffer, std::size_t offset, std::optional<std::size_t> size = std::nullopt);

    /// Receives one whole message as bytes. A message longer than `max_length` raises
    /// ProtocolError and leaves the connection unusable, as in Python.
    std::string recv_bytes(std::optional<std::size_t> max_length = std::nullopt);
    /// Receives one message into buffer[offset...] and returns its size. BufferTooShort (holding
    /// the whole message) if it does not fit; ValueError for an offset beyond the buffer.
    std::size_t recv_bytes_into(std::span<std::byte> buffer, std::size_t offset = 0);

    /// True if recv() would not block: a message is waiting, or the peer has closed (EOF).
    /// Waits up to `timeout` (zmp::forever: no limit; zero, the default: do not wait).
    bool poll(Timeout timeout = Seconds{0}) const;

    /// Closes this process's descriptor for every copy of this handle. Idempotent.
    void close();
    bool closed() const;
    bool readable() const;
    bool writable() const;
    /// A descriptor for select/poll/epoll that is readable while a message or EOF is waiting
    /// (after another process took from the same end it may say so spuriously: poll() tells).
    /// Owned by the Connection; OSError if closed.
    int fileno() const;

    /// True for two handles on the same end (copies of one Connection), as wait() returns them.
    friend bool operator==(const Connection& a, const Connection& b) { return a.state_ == b.state_; }

    /// For the runtime and the msgpack adaptor.
    explicit Connection(std::shared_ptr<detail::ConnectionState> state) : state_(std::move(state)) {}
    const std::shared_ptr<detail::ConnectionState>& state() const { return state_; }

private:
    // A received message while it is converted. Descriptors it brought are adopted by the
    // Connections the conversion makes; `fd_scope` closes the rest when the conversion is over.
    struct ReceivedValue {
        transport::Decoded handle;
        std::shared_ptr<void> fd_scope;
    };
    // Installs a descriptor collector for the value about to be packed (see fd_passing.hpp).
    std::shared_ptr<void> begin_send_value() const;
    void finish_send_value(void* fd_scope, const char* data, std::size_t size);
    ReceivedValue receive_value();

    std::shared_ptr<detail::ConnectionState> state_;
};

/// Connections travel (through a Pipe, or as a Process argument under every start method).
template <>
struct is_packable<Connection> : std::true_type {};

/// Two connected ends. Duplex (the default): both ends send and receive. Pipe(false) returns
/// (reader, writer): the first can only receive, the second only send.
std::pair<Connection, Connection> Pipe(bool duplex = true);

}  // namespace zmp

// A Connection inside a message sent through a Pipe travels as a passed descriptor. Anywhere
// else (no descriptor channel at hand) packing it raises ValueError.
namespace msgpack {
MSGPACK_API_VERSION_NAMESPACE(MSGPACK_DEFAULT_API_NS) {
    namespace adaptor {

    template <>
    struct pack<zmp::Connection> {
        template <class Stream>
        packer<Stream>& operator()(packer<Stream>& out, const zmp::Connection& conn) const;
    };

    template <>
    struct convert<zmp::Connection> {
        const msgpack::object& operator()(const msgpack::object& obj, zmp::Connection& conn) const;
    };

    }  // namespace adaptor
}
}  // namespace msgpack

namespace zmp::detail {
/// Catches the descriptors of the Connections packed on this thread while it lives, for a
/// message that will be sent later: take() returns duplicates the caller then owns.
class FdCapture {
public:
    FdCapture();
    ~FdCapture();
    FdCapture(const FdCapture&) = delete;
    FdCapture& operator=(const FdCapture&) = delete;
    std::vector<int> take();

private:
    struct Collector;
    std::unique_ptr<Collector> collector_;
};

/// Registers `conn`'s descriptor with the message being packed on this thread and returns the
/// token that stands for it on the wire. ValueError if no descriptor channel is packing.
std::string connection_token(const Connection& conn);
/// The Connection a received token stands for. ProtocolError for a token not in the message.
Connection connection_from_token(const msgpack::object& token);
}  // namespace zmp::detail

namespace msgpack {
MSGPACK_API_VERSION_NAMESPACE(MSGPACK_DEFAULT_API_NS) {
    namespace adaptor {

    template <class Stream>
    packer<Stream>& pack<zmp::Connection>::operator()(packer<Stream>& out, const zmp::Connection& conn) const {
        const std::string token = zmp::detail::connection_token(conn);
        out.pack_ext(token.size(), 0x5a);  // ext type 'Z': a zmp descriptor reference
        out.pack_ext_body(token.data(), static_cast<uint32_t>(token.size()));
        return out;
    }

    inline const msgpack::object& convert<zmp::Connection>::operator()(const msgpack::object& obj,
                                                                       zmp::Connection& conn) const {
        conn = zmp::detail::connection_from_token(obj);
        return obj;
    }

    }  // namespace adaptor
}
}  // namespace msgpack
