// The spawn and forkserver bootstrap (core/src/process/bootstrap.hpp): the one message a child
// that is not a copy of its parent reads to become itself, from its parent or the fork server.
// Contract: decoding it raises nothing but ProtocolError, and a bootstrap that decodes re-encodes
// to one that decodes to the same bootstrap.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "contract.hpp"
#include "process/bootstrap.hpp"
#include "zmp/errors.hpp"
#include "zmp/transport/codec.hpp"

using zmp::detail::Bootstrap;
using zmp_fuzz::expect;
using zmp_fuzz::violated;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    Bootstrap bootstrap;
    try {
        bootstrap = zmp::transport::decode_as<Bootstrap>(data, size);
    } catch (const zmp::ProtocolError&) {
        return 0;
    } catch (const std::exception& e) {
        violated(std::string("decoding a Bootstrap raised something other than ProtocolError: ") + e.what());
    }
    const msgpack::sbuffer again = zmp::transport::encode(bootstrap);
    Bootstrap back;
    try {
        back = zmp::transport::decode_as<Bootstrap>(again.data(), again.size());
    } catch (const std::exception& e) {
        violated(std::string("a re-encoded Bootstrap does not decode: ") + e.what());
    }
    const msgpack::sbuffer third = zmp::transport::encode(back);
    expect(third.size() == again.size() && std::memcmp(third.data(), again.data(), again.size()) == 0,
           "a Bootstrap did not survive decode, encode, decode");
    return 0;
}
