// The msgpack codec must turn every kind of hostile or broken frame into a ProtocolError, never a
// crash or a giant allocation.
#include <catch2/catch.hpp>

#include <map>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "zmp/errors.hpp"
#include "zmp/transport/codec.hpp"

using zmp::ProtocolError;
using zmp::transport::decode;
using zmp::transport::decode_as;
using zmp::transport::encode;

namespace {
struct Point {
    int x = 0;
    double y = 0;
    std::string label;
    MSGPACK_DEFINE(x, y, label)
};
}  // namespace

TEST_CASE("values round-trip through encode and decode") {
    const std::tuple<int, std::string, std::vector<double>, std::map<std::string, int>> value{
        -7, "hello", {1.5, 2.5}, {{"a", 1}, {"b", 2}}};
    auto buffer = encode(value);
    auto back = decode_as<std::remove_const_t<decltype(value)>>(buffer.data(), buffer.size());
    CHECK(back == value);

    Point p{3, 4.5, "here"};
    auto pb = encode(p);
    Point q = decode_as<Point>(pb.data(), pb.size());
    CHECK(q.x == 3);
    CHECK(q.y == 4.5);
    CHECK(q.label == "here");
}

TEST_CASE("an array header that claims billions of elements is a ProtocolError, not bad_alloc") {
    const unsigned char huge[] = {0xdd, 0xff, 0xff, 0xff, 0xff};  // array32 of 4 G elements
    CHECK_THROWS_AS(decode(huge, sizeof huge), ProtocolError);
    const unsigned char big[] = {0xdd, 0x10, 0x00, 0x00, 0x00};
    CHECK_THROWS_AS(decode(big, sizeof big), ProtocolError);
    const unsigned char map[] = {0xdf, 0x7f, 0xff, 0xff, 0xff};
    CHECK_THROWS_AS(decode(map, sizeof map), ProtocolError);
}

TEST_CASE("nested headers whose declared counts add up beyond the frame are rejected") {
    // [[[...]]] each level claiming 3 elements but holding only the next level.
    std::string frame;
    for (int i = 0; i < 10; ++i) frame.push_back(static_cast<char>(0x93));
    CHECK_THROWS_AS(decode(frame.data(), frame.size()), ProtocolError);
}

TEST_CASE("truncated, empty, reserved-byte and trailing-garbage frames are rejected") {
    auto buffer = encode(std::string(100, 'x'));
    CHECK_THROWS_AS(decode(buffer.data(), buffer.size() - 1), ProtocolError);
    CHECK_THROWS_AS(decode(buffer.data(), 0), ProtocolError);
    const unsigned char reserved[] = {0xc1};
    CHECK_THROWS_AS(decode(reserved, 1), ProtocolError);
    std::string trailing(buffer.data(), buffer.size());
    trailing += "junk";
    CHECK_THROWS_AS(decode(trailing.data(), trailing.size()), ProtocolError);
}

TEST_CASE("nesting deeper than the limit is rejected, within it accepted") {
    std::string deep(zmp::transport::kMaxDepth + 1, static_cast<char>(0x91));
    deep.push_back(0x00);
    CHECK_THROWS_AS(decode(deep.data(), deep.size()), ProtocolError);
    std::string ok(zmp::transport::kMaxDepth, static_cast<char>(0x91));
    ok.push_back(0x00);
    CHECK_NOTHROW(decode(ok.data(), ok.size()));
}

TEST_CASE("a value of the wrong type is a ProtocolError naming the wanted type") {
    auto buffer = encode(std::string("not a number"));
    try {
        (void)decode_as<int>(buffer.data(), buffer.size());
        FAIL("no exception");
    } catch (const ProtocolError& e) {
        CHECK(std::string(e.what()).find("int") != std::string::npos);
    }
    auto negative = encode(-1);
    CHECK_THROWS_AS(decode_as<unsigned>(negative.data(), negative.size()), ProtocolError);
}

TEST_CASE("random bytes never crash the decoder") {
    std::mt19937 rng(12345);
    std::uniform_int_distribution<int> byte(0, 255), length(1, 64);
    int rejected = 0;
    for (int i = 0; i < 20000; ++i) {
        std::string frame(static_cast<std::size_t>(length(rng)), '\0');
        for (char& c : frame) c = static_cast<char>(byte(rng));
        try {
            auto handle = decode(frame.data(), frame.size());
            (void)handle;
        } catch (const ProtocolError&) {
            ++rejected;
        }
    }
    CHECK(rejected > 0);  // most random frames are malformed; none may crash
}
