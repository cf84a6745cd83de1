// What the pool's dispatcher reads from a worker, local or joined over tcp (core/src/pool/frames.hpp):
// [0, [[task id, ok, values | ErrorRecord]...], busy µs], [1, ErrorRecord] (the initializer
// failed), and from a joined worker its hello [3, JoinHello] and pings.
// Contract: read_worker_message and read_result raise nothing but ProtocolError; a results message
// gives an array of entries; an entry with values points at them; an error entry's record, when it
// decodes, rebuilds into an exception without throwing.
#include <cstddef>
#include <cstdint>
#include <exception>
#include <string>

#include "contract.hpp"
#include "pool/frames.hpp"
#include "zmp/errors.hpp"
#include "zmp/transport/codec.hpp"

using zmp_fuzz::expect;
using zmp_fuzz::violated;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    namespace detail = zmp::detail;
    try {
        zmp::transport::Decoded decoded = zmp::transport::decode(data, size);
        const msgpack::object& object = decoded.get();
        const detail::WorkerMessage message = detail::read_worker_message(object);
        if (message.kind == detail::kJoinHello && object.via.array.size == 2) {
            // How the dispatcher admits a peer (joined.cpp): its hello converts or is refused.
            (void)zmp::transport::convert<detail::JoinHello>(object.via.array.ptr[1]);
            return 0;
        }
        if (message.kind != 0) return 0;
        expect(message.results != nullptr && message.results->type == msgpack::type::ARRAY,
               "a results message without an array of results");
        for (std::uint32_t i = 0; i < message.results->via.array.size; ++i) {
            const detail::WorkerResult result = detail::read_result(message.results->via.array.ptr[i]);
            switch (result.status) {
                case detail::WorkerResult::Status::values:
                    expect(result.values != nullptr, "a result with values that points at none");
                    break;
                case detail::WorkerResult::Status::error:
                    if (result.error) {
                        const std::exception_ptr error = detail::exception_from_record(*result.error);
                        expect(error != nullptr, "an error record rebuilt into no exception");
                    }
                    break;
                case detail::WorkerResult::Status::bad_status:
                    expect(result.values == nullptr && !result.error, "a bad status that carries a payload");
                    break;
            }
        }
    } catch (const zmp::ProtocolError&) {
        return 0;
    } catch (const std::exception& e) {
        violated(std::string("reading a worker's message raised something other than ProtocolError: ") + e.what());
    }
    return 0;
}
