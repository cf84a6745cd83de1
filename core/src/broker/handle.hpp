#pragma once
// The state behind zmp::detail::ObjectHandle: one process's reference to one broker object.
//
// Lifetime (the rule sync.hpp and queue.hpp state for users): the broker counts references per
// client process, and frees an object once none is left.
//   - make_handle(): the process that creates an object holds one reference (the broker counted it
//     with CREATE); copies of a handle in one process share it.
//   - The last copy in a process gone: the process drops its reference (REF_DROP).
//   - A handle packed into a message: the sender sets a reference aside for the receiver
//     (REF_HOLD with a random token, carried in the message); the receiver that decodes it takes
//     it over (REF_CLAIM with that token). A reference set aside and never claimed is released
//     when its sender has been dead for a while (the broker's kHoldGrace), or when its sender has
//     too many unclaimed.
//   - fork(): the child holds a reference of its own to everything the parent held (FORK_HOLD,
//     fork handlers below).
//   - A process that dies gives up every reference it held.
// All of a process's reference traffic to one broker goes through one connection (the link's
// reference channel), in order: a drop can never overtake the hold or claim made before it.

#include <atomic>
#include <cstdint>
#include <memory>

#include "zmp/detail/object_handle.hpp"

namespace zmp::detail::broker {
class BrokerLink;
struct Slot;
}  // namespace zmp::detail::broker

namespace zmp::detail {

struct ObjectRef {
    broker::BrokerLink* link = nullptr;
    std::uint64_t id = 0;
    std::uint8_t kind = 0;
    std::int64_t slot_index = -1;  // -1: the object's state lives in the broker
    broker::Slot* slot = nullptr;  // its state in the arena (the fast path)

    ObjectRef(broker::BrokerLink& link, std::uint64_t id, std::uint8_t kind, std::int64_t slot_index,
              broker::Slot* slot);
    ~ObjectRef();  // drops this process's reference
    ObjectRef(const ObjectRef&) = delete;
    ObjectRef& operator=(const ObjectRef&) = delete;
};

namespace broker {

/// A handle on object `id` that this process now holds a reference to (it created or claimed
/// it). `slot_index` >= 0: the object's state is at that slot of the link's arena.
ObjectHandle make_handle(BrokerLink& link, std::uint64_t id, std::uint8_t kind, std::int64_t slot_index);

/// The handle as it travels: sets a reference aside for the receiver. ValueError for an empty one.
ObjectWire to_wire(const ObjectHandle& handle);
/// A received handle: checks it (ProtocolError for a malformed one, or one whose shared state
/// does not match) and claims the reference set aside for it.
ObjectHandle from_wire(const ObjectWire& wire);

}  // namespace broker
}  // namespace zmp::detail
