// Exception records (zmp/exceptions.hpp): what a pool worker sends back for a task that raised,
// and what a child reports about its own end. The dispatcher decodes the record from the
// worker's result frame and rebuilds the exception (core/src/pool/dispatcher.cpp).
// Contract: decoding a record raises nothing but ProtocolError; exception_from_record never throws
// and gives an exception that, rethrown, is a std::exception.
#include <cstddef>
#include <cstdint>
#include <exception>
#include <string>

#include "contract.hpp"
#include "zmp/errors.hpp"
#include "zmp/exceptions.hpp"
#include "zmp/transport/codec.hpp"

using zmp_fuzz::expect;
using zmp_fuzz::violated;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    zmp::detail::ErrorRecord record;
    try {
        record = zmp::transport::decode_as<zmp::detail::ErrorRecord>(data, size);
    } catch (const zmp::ProtocolError&) {
        return 0;
    } catch (const std::exception& e) {
        violated(std::string("decoding an ErrorRecord raised something other than ProtocolError: ") + e.what());
    }
    std::exception_ptr error;
    try {
        error = zmp::detail::exception_from_record(record);
    } catch (const std::exception& e) {
        violated(std::string("exception_from_record raised: ") + e.what());
    }
    expect(error != nullptr, "exception_from_record gave no exception");
    try {
        std::rethrow_exception(error);
    } catch (const std::exception&) {
    } catch (...) {
        violated("exception_from_record made an exception that is not a std::exception");
    }
    return 0;
}
