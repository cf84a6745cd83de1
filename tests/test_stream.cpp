// ZeroMQ delivers at most once; zmp's acknowledged streams must deliver everything, even when the
// sender exits the moment it is done (docs/design.md, Upstream behaviour zmp works around).
#include <catch2/catch.hpp>

#include <cstring>

#include "runtime/run_directory.hpp"
#include "runtime/zmq_context.hpp"
#include "zmp/process.hpp"
#include "zmp/transport/stream.hpp"
#include "zmp/transport/zsocket.hpp"

using namespace std::chrono_literals;
using zmp::transport::StreamReceiver;
using zmp::transport::StreamSender;

TEST_CASE("100,000 messages from a child that exits right after sending all arrive, 20 times in a row") {
    constexpr std::uint64_t kCount = 100000;
    for (int round = 0; round < 20; ++round) {
        const std::string endpoint =
            zmp::transport::ipc_endpoint(zmp::detail::run_directory().path(), "stream" + std::to_string(round));
        StreamReceiver receiver(zmp::detail::zmq_context(), endpoint);
        zmp::Process child([endpoint] {
            StreamSender sender(zmp::detail::zmq_context(), endpoint);
            for (std::uint64_t i = 0; i < kCount; ++i) sender.send(&i, sizeof i);
            if (!sender.finish(30s)) zmp::exit(3);
            zmp::exit(0);  // and gone at once
        });
        child.start();

        std::uint64_t expected = 0;
        bool ended = false;
        while (!ended) {
            auto item = receiver.recv(30s);
            REQUIRE(item);
            if (item->kind == StreamReceiver::Item::Kind::end) {
                ended = true;
            } else {
                std::uint64_t value;
                REQUIRE(item->payload.size() == sizeof value);
                std::memcpy(&value, item->payload.data(), sizeof value);
                REQUIRE(value == expected);  // in order, none missing, none twice
                ++expected;
            }
        }
        CHECK(expected == kCount);
        child.join();
        CHECK(child.exitcode() == 0);
    }
}

TEST_CASE("a frame over a socket's size limit is dropped and the receiver keeps serving others") {
    const std::string endpoint = zmp::transport::ipc_endpoint(zmp::detail::run_directory().path(), "limit");
    zmp::transport::SocketOptions small;
    small.max_message = 1024;
    zmq::socket_t server = zmp::transport::open_socket(zmp::detail::zmq_context(), zmq::socket_type::pull, small);
    server.bind(endpoint);

    zmq::socket_t big = zmp::transport::open_socket(zmp::detail::zmq_context(), zmq::socket_type::push);
    big.connect(endpoint);
    std::string huge(64 * 1024, 'x');
    zmp::transport::send_message(big, {zmq::const_buffer(huge.data(), huge.size())});
    std::vector<zmq::message_t> frames;
    CHECK_FALSE(zmp::transport::recv_message(server, frames, 4, 300ms));

    zmq::socket_t polite = zmp::transport::open_socket(zmp::detail::zmq_context(), zmq::socket_type::push);
    polite.connect(endpoint);
    zmp::transport::send_message(polite, {zmq::const_buffer("hello", 5)});
    REQUIRE(zmp::transport::recv_message(server, frames, 4, 5s));
    CHECK(frames.at(0).to_string() == "hello");
}

TEST_CASE("a stream receiver drops malformed messages and counts them") {
    const std::string endpoint = zmp::transport::ipc_endpoint(zmp::detail::run_directory().path(), "garbage");
    StreamReceiver receiver(zmp::detail::zmq_context(), endpoint);
    zmq::socket_t rogue = zmp::transport::open_socket(zmp::detail::zmq_context(), zmq::socket_type::dealer);
    rogue.connect(endpoint);
    zmp::transport::send_message(rogue, {zmq::const_buffer("??", 2)});
    zmp::transport::send_message(rogue, {zmq::const_buffer("E", 1), zmq::const_buffer("short", 5)});
    zmp::transport::send_message(rogue, {zmq::const_buffer("X", 1), zmq::const_buffer("12345678", 8)});

    StreamSender sender(zmp::detail::zmq_context(), endpoint);
    int v = 7;
    sender.send(&v, sizeof v);
    auto item = receiver.recv(5s);
    REQUIRE(item);
    CHECK(item->kind == StreamReceiver::Item::Kind::data);
    CHECK_FALSE(receiver.recv(300ms));  // drains whatever garbage came after the data
    CHECK(receiver.dropped() == 3);
}

TEST_CASE("a stream sender refuses an acknowledgement of more messages than it sent, instead of stalling") {
    const std::string endpoint = zmp::transport::ipc_endpoint(zmp::detail::run_directory().path(), "overack");
    zmq::socket_t rogue = zmp::transport::open_socket(zmp::detail::zmq_context(), zmq::socket_type::router);
    rogue.bind(endpoint);
    StreamSender sender(zmp::detail::zmq_context(), endpoint, 1);
    sender.stall_timeout = 30s;
    int v = 7;
    sender.send(&v, sizeof v);
    std::vector<zmq::message_t> frames;
    REQUIRE(zmp::transport::recv_message(rogue, frames, 3, 5s));
    const std::uint64_t seven = 7;  // one message was sent
    zmp::transport::send_message(rogue, {zmq::const_buffer(frames[0].data(), frames[0].size()),
                                         zmq::const_buffer("A", 1), zmq::const_buffer(&seven, sizeof seven)});
    // Window 1: this send waits for the acknowledgement, and must refuse it at once.
    CHECK_THROWS_AS(sender.send(&v, sizeof v), zmp::ProtocolError);
    CHECK(sender.acknowledged() == 0);
}

TEST_CASE("ipc endpoints longer than sun_path are refused with a clear error") {
    std::string dir = "/tmp/" + std::string(120, 'd');
    CHECK_THROWS_AS(zmp::transport::ipc_endpoint(dir, "x"), zmp::ValueError);
    CHECK(zmp::transport::ipc_endpoint("/tmp/a", "b") == "ipc:///tmp/a/b");
}
