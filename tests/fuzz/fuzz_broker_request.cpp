// The broker's request decoding (core/src/broker/protocol.hpp): every envelope a client, or
// anything else that reaches the broker's socket, sends.
// Contract: decode_request raises nothing but ProtocolError; when it read a request id it reports
// it; a request it accepts has a known op and at most kMaxArgs arguments, and encode_request makes
// of it an envelope that decodes to the same request.
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

#include "broker/protocol.hpp"
#include "contract.hpp"
#include "zmp/errors.hpp"

namespace broker = zmp::detail::broker;

using zmp_fuzz::expect;
using zmp_fuzz::violated;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    broker::Request request;
    std::uint64_t rid_seen = 0;
    try {
        request = broker::decode_request(data, size, &rid_seen);
    } catch (const zmp::ProtocolError&) {
        return 0;
    } catch (const std::exception& e) {
        violated(std::string("decode_request raised something other than ProtocolError: ") + e.what());
    }
    expect(rid_seen == request.rid, "decode_request reported another request id than it decoded");
    const auto op = static_cast<std::uint8_t>(request.op);
    expect(op >= 1 && op <= broker::kLastOp, "decode_request accepted an unknown op");
    expect(request.payload == nullptr, "decode_request invented a payload");

    msgpack::sbuffer again;
    zmp_fuzz::with_index_sequence<broker::kMaxArgs>(
        request.nargs, [&]<std::size_t... I>(std::index_sequence<I...>) {
            broker::encode_request(again, request.op, request.object, request.rid, {request.args[I]...});
        });
    broker::Request back;
    try {
        back = broker::decode_request(again.data(), again.size());
    } catch (const std::exception& e) {
        violated(std::string("decode_request refused an envelope encode_request made: ") + e.what());
    }
    expect(back.op == request.op && back.object == request.object && back.rid == request.rid &&
               back.nargs == request.nargs && back.args == request.args,
           "a request did not survive decode, encode, decode");
    return 0;
}
