// The Manager and its proxies' one call (zmp/manager.hpp): requests to the Manager's objects in the
// broker (broker/objects/managed.cpp), and their handles on the wire.
#include "zmp/manager.hpp"

#include "broker/client.hpp"
#include "broker/handle.hpp"
#include "broker/protocol.hpp"
#include "zmp/transport/codec.hpp"

namespace zmp {
namespace detail {

using namespace broker;
using managed::Method;
using managed::Outcome;

namespace {

Kind kind_of(ManagedKind kind) {
    switch (kind) {
        case ManagedKind::dict:
            return Kind::manager_dict;
        case ManagedKind::list:
            return Kind::manager_list;
        case ManagedKind::namespace_:
            return Kind::manager_namespace;
        case ManagedKind::value:
            break;
    }
    return Kind::manager_value;
}

[[noreturn]] void raise_outcome(std::int64_t outcome, const std::string& text) {
    switch (static_cast<Outcome>(outcome)) {
        case Outcome::key_error:
            throw KeyError(text);
        case Outcome::index_error:
            throw IndexError(text);
        case Outcome::value_error:
            throw ValueError(text);
        case Outcome::type_error:
            throw TypeError(text);
        case Outcome::attribute_error:
            throw AttributeError(text);
        case Outcome::shut_down:
            throw ProcessError(text);
        case Outcome::ok:
            break;
    }
    throw ProtocolError("the broker answered a Manager call with an unknown outcome " + std::to_string(outcome));
}

}  // namespace

void ManagedItems::add_bytes(std::string_view bytes) {
    append_item(bytes_, bytes);
    ++count_;
}

std::vector<std::string_view> ManagedReply::items() const { return split_batch_views(batch, count); }

ManagedReply managed_call(const ObjectHandle& object, Method method, ManagedItems items, std::int64_t a,
                          std::int64_t b) {
    const ObjectRef& r = object.ref();
    const std::initializer_list<std::int64_t> args = {static_cast<std::int64_t>(method),
                                                      static_cast<std::int64_t>(items.count()), a, b};
    const Reply reply = items.count() > 0 ? r.link->call(Op::manager_call, r.id, args, std::move(items.bytes()))
                                          : r.link->call(Op::manager_call, r.id, args);
    if (reply.value(0) != 0) raise_outcome(reply.value(0), reply.text);
    ManagedReply out;
    out.result = reply.value(1);
    if (reply.value(2) < 0) throw ProtocolError("the broker answered a Manager call with a negative item count");
    out.count = static_cast<std::size_t>(reply.value(2));
    out.batch.assign(reply.payload.data<char>(), reply.payload.size());
    (void)out.items();  // ProtocolError now if the items are not what the answer says
    return out;
}

ObjectWire managed_to_wire(const ObjectHandle& object) { return broker::to_wire(object); }

ObjectHandle managed_from_wire(const msgpack::object& obj, ManagedKind kind) {
    if (obj.type != msgpack::type::ARRAY || obj.via.array.size != 6)
        throw ProtocolError("received a value that is not a Manager proxy where one was expected");
    const auto wire = transport::convert<ObjectWire>(obj);
    if (wire.kind != static_cast<std::uint8_t>(kind_of(kind)))
        throw ProtocolError("received a Manager proxy of another type than expected");
    return broker::from_wire(wire);
}

}  // namespace detail

// ---- Manager -----------------------------------------------------------------------------------------

namespace {
constexpr auto kManagerKind = static_cast<std::int64_t>(detail::broker::Kind::manager);
}

Manager::Manager() : owner_pid_(detail::broker::current_pid()) {
    using namespace detail::broker;
    BrokerLink& link = BrokerLink::local();
    const Reply r = link.call(Op::create, 0, {kManagerKind, 0, 0, 0, 0});
    handle_ = make_handle(link, static_cast<std::uint64_t>(r.value(0)), static_cast<std::uint8_t>(Kind::manager), -1);
    // The broker shuts the manager down if this process dies.
    (void)detail::managed_call(handle_, detail::managed::Method::attach_owner);
}

Manager::Manager(Manager&& other) noexcept
    : handle_(std::move(other.handle_)), owner_pid_(other.owner_pid_), shut_down_(other.shut_down_) {
    other.handle_ = detail::ObjectHandle();
    other.shut_down_ = true;
}

Manager::~Manager() {
    if (handle_.empty() || shut_down_ || detail::broker::current_pid() != owner_pid_) return;
    try {
        shutdown();
    } catch (const ProcessError&) {
        // The broker is gone: there is nothing left to shut down.
    }
}

void Manager::shutdown() {
    if (shut_down_ || handle_.empty()) return;
    shut_down_ = true;
    (void)detail::managed_call(handle_, detail::managed::Method::shutdown);
}

void Manager::check_running() const {
    if (shut_down_ || handle_.empty()) throw ProcessError("the Manager has shut down");
}

detail::ObjectHandle Manager::create(detail::ManagedKind kind) const {
    using namespace detail::broker;
    check_running();
    const detail::ObjectRef& m = handle_.ref();
    const auto k = detail::kind_of(kind);
    const Reply r =
        m.link->call(Op::create, 0, {static_cast<std::int64_t>(k), static_cast<std::int64_t>(m.id), 0, 0, 0});
    return make_handle(*m.link, static_cast<std::uint64_t>(r.value(0)), static_cast<std::uint8_t>(k), -1);
}

zmp::Lock Manager::Lock() const {
    check_running();
    return zmp::Lock();
}
zmp::RLock Manager::RLock() const {
    check_running();
    return zmp::RLock();
}
zmp::Semaphore Manager::Semaphore(int value) const {
    check_running();
    return zmp::Semaphore(value);
}
zmp::BoundedSemaphore Manager::BoundedSemaphore(int value) const {
    check_running();
    return zmp::BoundedSemaphore(value);
}
zmp::Event Manager::Event() const {
    check_running();
    return zmp::Event();
}
zmp::Condition Manager::Condition() const {
    check_running();
    return zmp::Condition();
}
zmp::Barrier Manager::Barrier(int parties) const {
    check_running();
    return zmp::Barrier(parties);
}

// ---- SharedMemoryManager ---------------------------------------------------------------------------

SharedMemoryManager::SharedMemoryManager() : owner_pid_(detail::broker::current_pid()) {}

SharedMemoryManager::~SharedMemoryManager() {
    if (detail::broker::current_pid() == owner_pid_) shutdown();
}

void SharedMemoryManager::check_running() const {
    if (shut_down_) throw ValueError("the SharedMemoryManager has shut down");
}

zmp::SharedMemory SharedMemoryManager::SharedMemory(std::int64_t size) {
    std::lock_guard lock(mutex_);
    check_running();
    zmp::SharedMemory shm(std::nullopt, true, size);
    names_.push_back(shm.name());
    return shm;
}

zmp::ShareableList SharedMemoryManager::ShareableList(const std::vector<ShareableValue>& sequence) {
    std::lock_guard lock(mutex_);
    check_running();
    zmp::ShareableList list(sequence);
    names_.push_back(list.name());
    return list;
}

void SharedMemoryManager::shutdown() {
    std::lock_guard lock(mutex_);
    if (shut_down_) return;
    shut_down_ = true;
    for (const std::string& name : names_) {
        try {
            zmp::SharedMemory(name).unlink();
        } catch (const ProcessError&) {
            // Unlinked already (by its user): nothing left to do.
        }
    }
    names_.clear();
}

}  // namespace zmp
