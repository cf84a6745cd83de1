#pragma once
// An acknowledged one-way stream over ZeroMQ (DEALER -> ROUTER), for data that must not be lost.
//
// ZeroMQ delivers at most once: libzmq 4.3.4 can drop the tail of an ipc stream when the sender
// closes while the receiver sits at its high-water mark (docs/design.md, Upstream behaviour zmp
// works around). So a stream that ends, ends with a handshake: the sender sends END(count) and
// waits for the receiver's FIN(count), which the receiver sends only once it has taken `count`
// messages from that sender. Along the way the receiver acknowledges cumulatively, and the
// sender never has more than `window` unacknowledged messages out: credit-based flow control that
// also bounds memory.
//
// Threading: a StreamSender or StreamReceiver belongs to the thread that made it.
//
//     StreamSender out(ctx, endpoint);             StreamReceiver in(ctx, endpoint);
//     out.send(p, n); ...; out.finish(5s);          while (auto m = in.recv(1s)) { ... }

#include <zmq.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace zmp::transport {

class StreamSender {
public:
    /// Connects a DEALER to `endpoint`. `window` is the most messages in flight unacknowledged.
    StreamSender(zmq::context_t& context, const std::string& endpoint, std::size_t window = 4096);

    /// Sends one message; blocks while `window` messages are unacknowledged. Throws OSError
    /// (ETIMEDOUT) if no acknowledgement arrives within `stall_timeout`, ProtocolError if the
    /// receiver answers with a malformed acknowledgement or one of more messages than were sent.
    void send(const void* data, std::size_t size);

    /// Ends the stream: sends END and waits until the receiver confirms it holds every message.
    /// Returns false if the confirmation does not come within `timeout`; throws ProtocolError if
    /// the receiver reports fewer messages than were sent, or answers as send() describes.
    bool finish(std::chrono::milliseconds timeout);

    std::uint64_t sent() const noexcept { return sent_; }
    std::uint64_t acknowledged() const noexcept { return acked_; }

    std::chrono::milliseconds stall_timeout{std::chrono::seconds(30)};

private:
    // Reads one control message from the receiver; false on timeout.
    bool read_control(std::optional<std::chrono::milliseconds> timeout);

    zmq::socket_t socket_;
    std::size_t window_;
    std::uint64_t sent_ = 0;
    std::uint64_t acked_ = 0;
    std::optional<std::uint64_t> finished_;  // FIN count, once received
};

class StreamReceiver {
public:
    /// What recv() hands back: a data message, or the news that a sender finished its stream.
    struct Item {
        enum class Kind { data, end } kind;
        std::string sender;      ///< ZeroMQ routing id of the sender
        zmq::message_t payload;  ///< data only
    };

    /// Binds a ROUTER on `endpoint`.
    StreamReceiver(zmq::context_t& context, const std::string& endpoint, std::size_t ack_every = 1024);

    /// Next item, or nullopt if none arrives within `timeout` (nullopt: wait for ever).
    /// Malformed messages are counted in `dropped()` and skipped.
    std::optional<Item> recv(std::optional<std::chrono::milliseconds> timeout = std::nullopt);

    std::uint64_t dropped() const noexcept { return dropped_; }

private:
    void reply(const std::string& sender, char kind, std::uint64_t count);

    zmq::socket_t socket_;
    std::size_t ack_every_;
    std::unordered_map<std::string, std::uint64_t> received_;  // per sender
    std::vector<zmq::message_t> frames_;
    std::uint64_t dropped_ = 0;
};

}  // namespace zmp::transport
