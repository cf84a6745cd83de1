// The codec's typed decoding (zmp/transport/codec.hpp), which every msgpack frame from another
// process goes through. The first byte picks the type asked for, the rest is the frame.
// Contract: decode() and decode_as<T>() raise nothing but ProtocolError; a frame that decodes
// re-encodes to one that decodes to the same value, and re-encoding is stable from then on.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "contract.hpp"
#include "zmp/transport/codec.hpp"

namespace {

using zmp::ProtocolError;
using zmp::transport::decode;
using zmp::transport::decode_as;
using zmp::transport::encode;
using zmp::transport::type_name;
using zmp_fuzz::expect;
using zmp_fuzz::violated;

bool same_bytes(const msgpack::sbuffer& a, const msgpack::sbuffer& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size()) == 0;
}

template <class T>
void check_typed(const char* frame, std::size_t size) {
    const std::string type = type_name(typeid(T));
    T value{};
    try {
        value = decode_as<T>(frame, size);
    } catch (const ProtocolError&) {
        return;  // the documented refusal
    } catch (const std::exception& e) {
        violated("decode_as<" + type + "> raised something other than ProtocolError: " + e.what());
    }
    const msgpack::sbuffer again = encode(value);
    T back{};
    try {
        back = decode_as<T>(again.data(), again.size());
    } catch (const std::exception& e) {
        violated("decode_as<" + type + "> refused the re-encoding of a value it had decoded: " + e.what());
    }
    // Equal values encode alike; comparing encodings also lets NaN (which is unequal to itself)
    // count as surviving the trip when its bits do.
    expect(same_bytes(encode(back), again), "a " + type + " did not survive decode, encode, decode");
}

// Any value at all: the decoded object re-encodes, and encoding what that decodes to gives the
// same bytes again.
void check_untyped(const char* frame, std::size_t size) {
    msgpack::sbuffer first;
    try {
        zmp::transport::Decoded handle = decode(frame, size);
        msgpack::pack(first, handle.get());
    } catch (const ProtocolError&) {
        return;
    } catch (const std::exception& e) {
        violated(std::string("decode raised something other than ProtocolError: ") + e.what());
    }
    msgpack::sbuffer second;
    try {
        zmp::transport::Decoded handle = decode(first.data(), first.size());
        msgpack::pack(second, handle.get());
    } catch (const std::exception& e) {
        violated(std::string("decode refused the re-encoding of a frame it had decoded: ") + e.what());
    }
    expect(same_bytes(first, second), "re-encoding a decoded frame is not stable");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    const char* frame = reinterpret_cast<const char*>(data + 1);
    const std::size_t n = size - 1;
    switch (data[0] % 10) {
        case 0:
            check_untyped(frame, n);
            break;
        case 1:
            check_typed<std::int64_t>(frame, n);
            break;
        case 2:
            check_typed<std::uint32_t>(frame, n);
            break;
        case 3:
            check_typed<double>(frame, n);
            break;
        case 4:
            check_typed<std::string>(frame, n);
            break;
        case 5:
            check_typed<std::vector<std::string>>(frame, n);
            break;
        case 6:
            check_typed<std::map<std::string, std::vector<std::int64_t>>>(frame, n);
            break;
        case 7:
            check_typed<std::tuple<int, std::optional<std::string>, std::vector<std::vector<std::int64_t>>>>(frame, n);
            break;
        case 8:
            check_typed<std::pair<bool, std::vector<char>>>(frame, n);
            break;
        default:
            check_typed<std::vector<std::map<std::string, std::optional<double>>>>(frame, n);
            break;
    }
    return 0;
}
