// Queue batch splitting (core/src/broker/protocol.hpp): the frame of items that follows a
// QUEUE_PUT request (from any client) and a QUEUE_GET reply (from the broker). The first two input
// bytes are the item count the envelope announced (little-endian), the rest is the batch.
// Contract: split_batch_views raises nothing but ProtocolError; the items it returns lie inside the
// batch, in order, and append_item rebuilds exactly the batch from them.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "broker/protocol.hpp"
#include "contract.hpp"
#include "zmp/errors.hpp"

namespace broker = zmp::detail::broker;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using zmp_fuzz::expect;
    if (size < 2) return 0;
    const std::size_t count = data[0] | (std::size_t{data[1]} << 8);
    const std::string_view batch(reinterpret_cast<const char*>(data + 2), size - 2);
    std::vector<std::string_view> items;
    try {
        items = broker::split_batch_views(batch, count);
    } catch (const zmp::ProtocolError&) {
        return 0;
    } catch (const std::exception& e) {
        zmp_fuzz::violated(std::string("split_batch_views raised something other than ProtocolError: ") + e.what());
    }
    expect(items.size() == count, "split_batch_views returned another number of items than announced");
    std::string rebuilt;
    const char* at = batch.data();
    for (std::string_view item : items) {
        expect(item.data() == at + 4, "an item does not start right after its length");
        at = item.data() + item.size();
        broker::append_item(rebuilt, item);
    }
    expect(rebuilt == batch, "append_item does not rebuild the batch from its items");
    return 0;
}
