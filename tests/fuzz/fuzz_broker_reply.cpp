// The broker's reply decoding (core/src/broker/protocol.hpp): every envelope a client's DEALER
// receives.
// Contract: decode_reply raises nothing but ProtocolError; a reply it accepts has a known status
// and at most kMaxValues values, and encode_reply makes of it an envelope that decodes to the same
// reply.
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
    broker::Reply reply;
    try {
        reply = broker::decode_reply(data, size);
    } catch (const zmp::ProtocolError&) {
        return 0;
    } catch (const std::exception& e) {
        violated(std::string("decode_reply raised something other than ProtocolError: ") + e.what());
    }
    expect(static_cast<std::uint8_t>(reply.status) <= broker::kLastStatus, "decode_reply accepted an unknown status");
    for (std::size_t i = 0; i < broker::kMaxValues; ++i)
        expect(reply.value(i) == (i < reply.nvalues ? reply.values[i] : 0), "Reply::value disagrees with values");

    msgpack::sbuffer again;
    zmp_fuzz::with_index_sequence<broker::kMaxValues>(
        reply.nvalues, [&]<std::size_t... I>(std::index_sequence<I...>) {
            broker::encode_reply(again, reply.rid, reply.status, {reply.values[I]...}, reply.text);
        });
    broker::Reply back;
    try {
        back = broker::decode_reply(again.data(), again.size());
    } catch (const std::exception& e) {
        violated(std::string("decode_reply refused an envelope encode_reply made: ") + e.what());
    }
    expect(back.rid == reply.rid && back.status == reply.status && back.nvalues == reply.nvalues &&
               back.values == reply.values && back.text == reply.text,
           "a reply did not survive decode, encode, decode");
    return 0;
}
