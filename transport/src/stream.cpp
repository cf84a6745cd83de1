#include "zmp/transport/stream.hpp"

#include <cerrno>
#include <cstring>

#include "zmp/detail/deadline.hpp"
#include "zmp/errors.hpp"
#include "zmp/transport/zsocket.hpp"

namespace zmp::transport {
namespace {

// Frame 0 of every stream message is one kind byte; a count, when there is one, follows as a
// little-endian u64 in frame 1.
constexpr char kData = 'D', kEnd = 'E', kAck = 'A', kFin = 'F', kNack = 'N';

std::uint64_t read_count(const zmq::message_t& frame) {
    if (frame.size() != sizeof(std::uint64_t)) throw ProtocolError("stream count frame has the wrong size");
    std::uint64_t value;
    std::memcpy(&value, frame.data(), sizeof value);
    return value;
}

}  // namespace

StreamSender::StreamSender(zmq::context_t& context, const std::string& endpoint, std::size_t window)
    : socket_(open_socket(context, zmq::socket_type::dealer)), window_(window == 0 ? 1 : window) {
    socket_.connect(endpoint);
}

bool StreamSender::read_control(std::optional<std::chrono::milliseconds> timeout) {
    std::vector<zmq::message_t> frames;
    if (!recv_message(socket_, frames, 2, timeout)) return false;
    if (frames.size() != 2 || frames[0].size() != 1) throw ProtocolError("malformed stream acknowledgement");
    std::uint64_t count = read_count(frames[1]);
    switch (*frames[0].data<char>()) {
        case kAck:
            acked_ = std::max(acked_, count);
            break;
        case kFin:
            acked_ = std::max(acked_, count);
            finished_ = count;
            break;
        case kNack:
            throw ProtocolError("stream receiver holds " + std::to_string(count) + " of " + std::to_string(sent_) +
                                " messages sent: ZeroMQ lost the rest");
        default:
            throw ProtocolError("unknown stream acknowledgement");
    }
    return true;
}

void StreamSender::send(const void* data, std::size_t size) {
    while (sent_ - acked_ >= window_) {
        if (!read_control(stall_timeout)) throw OSError("stream receiver stopped acknowledging", ETIMEDOUT);
    }
    send_message(socket_, {zmq::const_buffer(&kData, 1), zmq::const_buffer(data, size)});
    ++sent_;
}

bool StreamSender::finish(std::chrono::milliseconds timeout) {
    const std::uint64_t count = sent_;
    send_message(socket_, {zmq::const_buffer(&kEnd, 1), zmq::const_buffer(&count, sizeof count)});
    const auto deadline = detail::Deadline::after(timeout);
    while (!finished_ || *finished_ != count) {
        if (!read_control(std::chrono::milliseconds(deadline.poll_ms())) && deadline.passed()) return false;
    }
    return true;
}

StreamReceiver::StreamReceiver(zmq::context_t& context, const std::string& endpoint, std::size_t ack_every)
    : socket_(open_socket(context, zmq::socket_type::router)), ack_every_(ack_every == 0 ? 1 : ack_every) {
    socket_.bind(endpoint);
}

void StreamReceiver::reply(const std::string& sender, char kind, std::uint64_t count) {
    send_message(socket_, {zmq::const_buffer(sender.data(), sender.size()), zmq::const_buffer(&kind, 1),
                           zmq::const_buffer(&count, sizeof count)});
}

std::optional<StreamReceiver::Item> StreamReceiver::recv(std::optional<std::chrono::milliseconds> timeout) {
    const auto deadline = timeout ? detail::Deadline::after(*timeout) : detail::Deadline::never();
    for (;;) {
        std::optional<std::chrono::milliseconds> left;
        if (!deadline.is_never()) left = std::chrono::milliseconds(deadline.poll_ms());
        try {
            if (!recv_message(socket_, frames_, 3, left)) return std::nullopt;
        } catch (const ProtocolError&) {
            ++dropped_;
            continue;
        }
        if (frames_.size() != 3 || frames_[1].size() != 1) {
            ++dropped_;
            continue;
        }
        std::string sender(frames_[0].data<char>(), frames_[0].size());
        const char kind = *frames_[1].data<char>();
        if (kind == kData) {
            std::uint64_t& count = received_[sender];
            if (++count % ack_every_ == 0) reply(sender, kAck, count);
            return Item{Item::Kind::data, std::move(sender), std::move(frames_[2])};
        }
        if (kind == kEnd && frames_[2].size() == sizeof(std::uint64_t)) {
            const std::uint64_t expected = read_count(frames_[2]);
            const std::uint64_t count = received_[sender];
            received_.erase(sender);
            reply(sender, count == expected ? kFin : kNack, count);
            return Item{Item::Kind::end, std::move(sender), zmq::message_t()};
        }
        ++dropped_;
    }
}

}  // namespace zmp::transport
