// The acknowledged-stream framing (zmp/transport/stream.hpp), both ways, over real ZeroMQ sockets
// (inproc): the first input byte says which side is fed, the rest is a sequence of multipart
// messages (a byte for the frame count, then each frame as a length byte and its bytes).
//   even: a peer DEALER sends the messages to a StreamReceiver, as a sender on any host could;
//   odd:  a peer ROUTER answers a StreamSender with them, as a receiver could.
// Contract, checked against a model of the protocol: the receiver returns every well-formed DATA
// and END in order, counts every other message in dropped(), raises nothing, and answers with
// exactly the ACK, FIN and NACK the protocol calls for; the sender accepts well-formed ACK and
// FIN, and raises ProtocolError (nothing else, and never stalls) at the first control message
// that is malformed, a NACK, or counts more messages than were sent.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "contract.hpp"
#include "zmp/errors.hpp"
#include "zmp/transport/stream.hpp"
#include "zmp/transport/zsocket.hpp"

namespace {

using namespace std::chrono_literals;
using zmp::transport::StreamReceiver;
using zmp::transport::StreamSender;
using zmp_fuzz::expect;
using zmp_fuzz::violated;
using Message = std::vector<std::string>;

constexpr std::size_t kAckEvery = 3;  // small, so that acknowledgements come often

std::vector<Message> parse_messages(const std::uint8_t* data, std::size_t size) {
    std::vector<Message> messages;
    std::size_t at = 0;
    while (at < size) {
        Message frames(data[at++] % 4 + 1);
        for (std::string& frame : frames) {
            const std::size_t length = at < size ? data[at++] : 0;
            const std::size_t taken = std::min(length, size - at);
            frame.assign(reinterpret_cast<const char*>(data + at), taken);
            at += taken;
        }
        messages.push_back(std::move(frames));
    }
    return messages;
}

std::string count_frame(std::uint64_t count) {
    std::string frame(sizeof count, '\0');
    std::memcpy(frame.data(), &count, sizeof count);
    return frame;
}

std::optional<std::uint64_t> count_of(const std::string& frame) {
    if (frame.size() != sizeof(std::uint64_t)) return std::nullopt;
    std::uint64_t count;
    std::memcpy(&count, frame.data(), sizeof count);
    return count;
}

void send_frames(zmq::socket_t& socket, const Message& frames) {
    std::vector<zmq::const_buffer> buffers;
    for (const std::string& frame : frames) buffers.emplace_back(frame.data(), frame.size());
    if (!zmp::transport::send_message(socket, buffers)) violated("harness: send failed");
}

// ---- the receiver side: a peer sends whatever it likes to a StreamReceiver ----

struct ReceiverSide {
    static constexpr const char* kEndpoint = "inproc://zmp-fuzz-stream-receiver";
    zmq::context_t context;
    StreamReceiver receiver{context, kEndpoint, kAckEvery};
    zmq::socket_t peer;
    std::uint64_t received = 0;  // DATA messages since the peer's last END, as the receiver must count them

    ReceiverSide() {
        zmp::transport::SocketOptions options;
        options.routing_id = "peer";
        peer = zmp::transport::open_socket(context, zmq::socket_type::dealer, options);
        peer.connect(kEndpoint);
    }
};

void feed_receiver(const std::vector<Message>& messages) {
    static ReceiverSide& side = *new ReceiverSide();  // kept for the whole run, as a server is
    struct Expected {
        bool data;
        std::string payload;
    };
    std::vector<Expected> items;
    std::vector<Message> replies;
    std::uint64_t drops = 0;
    for (const Message& frames : messages) {
        send_frames(side.peer, frames);
        // The receiver sees [routing id, kind, payload or count].
        if (frames.size() == 2 && frames[0].size() == 1 && frames[0][0] == 'D') {
            items.push_back({true, frames[1]});
            if (++side.received % kAckEvery == 0) replies.push_back({"A", count_frame(side.received)});
        } else if (frames.size() == 2 && frames[0].size() == 1 && frames[0][0] == 'E' && count_of(frames[1])) {
            items.push_back({false, {}});
            replies.push_back({*count_of(frames[1]) == side.received ? "F" : "N", count_frame(side.received)});
            side.received = 0;
        } else {
            ++drops;
        }
    }

    const std::uint64_t dropped_before = side.receiver.dropped();
    for (const Expected& expected : items) {
        std::optional<StreamReceiver::Item> item;
        try {
            item = side.receiver.recv(5s);
        } catch (const std::exception& e) {
            violated(std::string("StreamReceiver::recv raised: ") + e.what());
        }
        expect(item.has_value(), "a well-formed stream message never came out of the receiver");
        expect(item->sender == "peer", "the receiver names another sender");
        if (expected.data) {
            expect(item->kind == StreamReceiver::Item::Kind::data, "a DATA message came out as something else");
            expect(item->payload.to_string() == expected.payload, "a DATA message's payload changed");
        } else {
            expect(item->kind == StreamReceiver::Item::Kind::end, "an END message came out as something else");
        }
    }
    expect(!side.receiver.recv(0ms).has_value(), "the receiver returned a message that is not well-formed");
    expect(side.receiver.dropped() - dropped_before == drops,
           "the receiver dropped " + std::to_string(side.receiver.dropped() - dropped_before) + " messages, not " +
               std::to_string(drops));

    std::vector<zmq::message_t> got;
    for (const Message& reply : replies) {
        expect(zmp::transport::recv_message(side.peer, got, 4, 5s),
               "an acknowledgement the protocol calls for never came");
        expect(got.size() == 2 && got[0].to_string() == reply[0] && got[1].to_string() == reply[1],
               "the receiver answered with another acknowledgement than the protocol calls for");
    }
    expect(!zmp::transport::recv_message(side.peer, got, 4, 0ms),
           "the receiver sent an acknowledgement nobody asked for");
}

// ---- the sender side: a peer answers a StreamSender with whatever it likes ----

struct SenderSide {
    static constexpr const char* kEndpoint = "inproc://zmp-fuzz-stream-sender";
    zmq::context_t context;
    zmq::socket_t peer;

    SenderSide() {
        peer = zmp::transport::open_socket(context, zmq::socket_type::router);
        peer.bind(kEndpoint);
    }
};

// What the sender must make of the control messages: reads them in order as sending the second
// message (window 1: it waits until the first is acknowledged) and then finish() need them.
bool model_sender(const std::vector<Message>& controls) {
    std::size_t next = 0;
    std::uint64_t acked = 0;
    std::optional<std::uint64_t> finished;
    // One control message read while `sent` messages are out; false if it must be refused.
    auto read = [&](std::uint64_t sent) {
        const Message& frames = controls.at(next++);
        if (frames.size() != 2 || frames[0].size() != 1) return false;
        const std::optional<std::uint64_t> count = count_of(frames[1]);
        if (!count || *count > sent) return false;
        if (frames[0][0] == 'A') {
            acked = std::max(acked, *count);
            return true;
        }
        if (frames[0][0] == 'F') {
            acked = std::max(acked, *count);
            finished = count;
            return true;
        }
        return false;  // NACK, or an unknown kind
    };
    while (acked < 1)
        if (!read(1)) return false;
    while (finished != 2u)
        if (!read(2)) return false;
    return true;
}

void feed_sender(std::vector<Message> controls) {
    static SenderSide& side = *new SenderSide();
    // The well-formed tail a correct receiver would send, so that a run without errors ends at once.
    controls.push_back({"A", count_frame(1)});
    controls.push_back({"F", count_frame(2)});
    const bool accepted = model_sender(controls);

    StreamSender sender(side.context, SenderSide::kEndpoint, 1);
    sender.stall_timeout = 5s;  // only a sender that waits when it must not would wait this long
    const char byte = 'x';
    sender.send(&byte, 1);
    std::vector<zmq::message_t> first;
    expect(zmp::transport::recv_message(side.peer, first, 3, 5s) && first.size() == 3,
           "harness: no DATA from the sender");
    const std::string routing_id = first[0].to_string();
    for (const Message& frames : controls) {
        Message addressed{routing_id};
        addressed.insert(addressed.end(), frames.begin(), frames.end());
        send_frames(side.peer, addressed);
    }

    bool finished = false;
    try {
        sender.send(&byte, 1);
        finished = sender.finish(5s);
        expect(finished, "finish() timed out although the receiver confirmed every message");
    } catch (const zmp::ProtocolError&) {
    } catch (const std::exception& e) {
        violated(std::string("StreamSender raised something other than ProtocolError: ") + e.what());
    }
    expect(finished == accepted, accepted ? "the sender refused well-formed acknowledgements"
                                          : "the sender accepted a control message it must refuse");
    if (finished) expect(sender.acknowledged() == 2, "the sender counts another number of acknowledged messages");

    std::vector<zmq::message_t> rest;  // the sender's DATA and END, and nothing must pile up
    while (zmp::transport::recv_message(side.peer, rest, 4, 0ms)) {
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    std::vector<Message> messages = parse_messages(data + 1, size - 1);
    if (data[0] % 2 == 0)
        feed_receiver(messages);
    else
        feed_sender(std::move(messages));
    return 0;
}
