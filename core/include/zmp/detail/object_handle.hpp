#pragma once
// What a handle on a broker object (Lock, Event, Queue...) holds: an opaque, counted reference to
// one object of one broker. Internal: public classes hold it by value and never look inside (its
// state is defined in core/src/broker/handle.hpp).

#include <msgpack.hpp>

#include <cstdint>
#include <memory>
#include <string>

namespace zmp::detail {

struct ObjectRef;

/// Copies share one reference of this process to the object; the object is freed once no handle
/// of it is left in any process (see the lifetime rule in sync.hpp).
class ObjectHandle {
public:
    ObjectHandle() = default;
    explicit ObjectHandle(std::shared_ptr<ObjectRef> ref) : ref_(std::move(ref)) {}

    ObjectRef& ref() const { return *ref_; }
    bool empty() const { return ref_ == nullptr; }
    /// Whether both name the same object (of the same broker).
    bool same_object(const ObjectHandle& other) const;

private:
    std::shared_ptr<ObjectRef> ref_;
};

/// A broker object's handle inside a message: [broker endpoint, object id, kind, slot, arena name,
/// token]. The token names the reference the sender set aside for the receiver.
struct ObjectWire {
    std::string endpoint;
    std::uint64_t id = 0;
    std::uint8_t kind = 0;
    std::int64_t slot = -1;
    std::string arena;
    std::uint64_t token = 0;
    MSGPACK_DEFINE(endpoint, id, kind, slot, arena, token)
};

}  // namespace zmp::detail
