#include "broker/handle.hpp"

#include <climits>

#include "broker/arena.hpp"
#include "broker/client.hpp"
#include "zmp/errors.hpp"

namespace zmp::detail {

bool ObjectHandle::same_object(const ObjectHandle& other) const {
    if (ref_ == other.ref_) return true;
    if (ref_ == nullptr || other.ref_ == nullptr) return false;
    return ref_->link == other.ref_->link && ref_->id == other.ref_->id;
}

ObjectRef::ObjectRef(broker::BrokerLink& link_, std::uint64_t id_, std::uint8_t kind_, std::int64_t slot_index_,
                     broker::Slot* slot_)
    : link(&link_), id(id_), kind(kind_), slot_index(slot_index_), slot(slot_) {
    link->live_handles.fetch_add(1, std::memory_order_relaxed);
}

ObjectRef::~ObjectRef() {
    link->live_handles.fetch_sub(1, std::memory_order_relaxed);
    link->drop(id);
}

namespace broker {

ObjectHandle make_handle(BrokerLink& link, std::uint64_t id, std::uint8_t kind, std::int64_t slot_index) {
    Slot* slot = nullptr;
    if (slot_index >= 0) {
        Arena* arena = link.arena();
        if (arena == nullptr || slot_index > UINT32_MAX)
            throw ProtocolError("the broker named a slot it does not have");
        slot = &arena->slot(static_cast<std::uint32_t>(slot_index));
    }
    return ObjectHandle(std::make_shared<ObjectRef>(link, id, kind, slot_index, slot));
}

ObjectWire to_wire(const ObjectHandle& handle) {
    if (handle.empty()) throw ValueError("an empty handle cannot travel");
    const ObjectRef& r = handle.ref();
    Arena* arena = r.link->arena();
    return ObjectWire{r.link->name(),
                      r.id,
                      r.kind,
                      r.slot_index,
                      r.slot_index >= 0 && arena != nullptr ? arena->prefix() : std::string(),
                      r.link->hold_for_message(r.id)};
}

ObjectHandle from_wire(const ObjectWire& wire) {
    if (wire.endpoint.empty() || wire.endpoint.size() > 1024 || wire.id == 0 || wire.slot < -1 ||
        wire.slot > UINT32_MAX) {
        throw ProtocolError("received a malformed handle");
    }
    BrokerLink& link = BrokerLink::named(wire.endpoint);
    Slot* slot = nullptr;
    if (wire.slot >= 0 && link.remote()) {
        throw ProtocolError(
            "received a handle whose object keeps its state in its broker's shared memory, out of reach of a "
            "process joined over tcp (a broker serves tcp only if it has none: zmp::serve before the first object)");
    }
    if (wire.slot >= 0) {
        Arena* arena = link.arena(wire.arena);
        if (arena == nullptr) throw ProtocolError("received a handle without its arena");
        slot = &arena->slot(static_cast<std::uint32_t>(wire.slot));
        if (slot->id.load(std::memory_order_acquire) != wire.id || slot->kind.load() != wire.kind) {
            throw ProtocolError(
                "received a handle of an object that no longer exists (or does not match its shared state)");
        }
    }
    link.claim(wire.id, wire.token);
    return ObjectHandle(std::make_shared<ObjectRef>(link, wire.id, wire.kind, wire.slot, slot));
}

}  // namespace broker
}  // namespace zmp::detail
