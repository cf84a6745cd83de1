// The Manager and its proxies' one call (zmp/manager.hpp): requests to the Manager's objects in the
// broker (broker/objects/managed.cpp), and their handles on the wire.
#include "zmp/manager.hpp"

#include "broker/client.hpp"
#include "broker/handle.hpp"
#include "broker/protocol.hpp"
#include "zmp/remote.hpp"
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

// A handle's wire as a manager names it: each broker object in it (a handle is an ObjectWire or a
// queue's wire, [endpoint, id, kind, ..., token], or an array of them, as a Condition's) with its
// token, and the wire again with every token 0 (a named object's wire is handed out many times;
// each receiver's reference comes with the name_get answer instead).
struct HandleWire {
    struct Object {
        std::string endpoint;
        std::uint64_t id = 0;
        std::uint8_t kind = 0;
        std::uint64_t token = 0;
    };
    std::vector<Object> objects;
    std::string without_tokens;
};

bool is_object_wire(const msgpack::object& o) {
    if (o.type != msgpack::type::ARRAY || o.via.array.size != 6) return false;
    const msgpack::object* f = o.via.array.ptr;
    return f[0].type == msgpack::type::STR && f[1].type == msgpack::type::POSITIVE_INTEGER &&
           f[2].type == msgpack::type::POSITIVE_INTEGER && f[2].via.u64 <= 255 &&
           f[5].type == msgpack::type::POSITIVE_INTEGER;
}

void walk_wire(const msgpack::object& o, msgpack::packer<msgpack::sbuffer>& out, HandleWire& wire, int depth) {
    if (is_object_wire(o)) {
        const msgpack::object* f = o.via.array.ptr;
        wire.objects.push_back({std::string(f[0].via.str.ptr, f[0].via.str.size), f[1].via.u64,
                                static_cast<std::uint8_t>(f[2].via.u64), f[5].via.u64});
        out.pack_array(6);
        for (int i = 0; i < 5; ++i) out.pack(f[i]);
        out.pack(0);
        return;
    }
    if (o.type != msgpack::type::ARRAY || depth > 2 || o.via.array.size == 0)
        throw ProtocolError("a Manager can name zmp handles only");
    out.pack_array(o.via.array.size);
    for (std::uint32_t i = 0; i < o.via.array.size; ++i) walk_wire(o.via.array.ptr[i], out, wire, depth + 1);
}

HandleWire read_handle_wire(std::string_view bytes) {
    transport::Decoded decoded = transport::decode(bytes.data(), bytes.size());
    HandleWire wire;
    msgpack::sbuffer buffer;
    msgpack::packer<msgpack::sbuffer> out(buffer);
    walk_wire(decoded.get(), out, wire, 0);
    wire.without_tokens.assign(buffer.data(), buffer.size());
    return wire;
}

}  // namespace

Manager::Manager() : owner_pid_(detail::broker::current_pid()) {
    using namespace detail::broker;
    BrokerLink& link = BrokerLink::local();
    const Reply r = link.call(Op::create, 0, {kManagerKind, 0, 0, 0, 0});
    handle_ = make_handle(link, static_cast<std::uint64_t>(r.value(0)), static_cast<std::uint8_t>(Kind::manager), -1);
    // The broker shuts the manager down if this process dies.
    (void)detail::managed_call(handle_, detail::managed::Method::attach_owner);
}

Manager::Manager(detail::ObjectHandle handle, std::string address, bool connected)
    : handle_(std::move(handle)),
      address_(std::move(address)),
      owner_pid_(detail::broker::current_pid()),
      connected_(connected) {}

Manager Manager::serve(const std::string& address, const Authkey& authkey) {
    ServeOptions options;
    options.authkey = authkey;
    std::string bound = zmp::serve(address, options);
    Manager manager;
    manager.address_ = std::move(bound);
    (void)detail::managed_call(manager.handle_, detail::managed::Method::publish);
    return manager;
}

Manager Manager::connect(const std::string& address, const Authkey& authkey, std::chrono::milliseconds timeout) {
    using namespace detail::broker;
    zmp::connect(address, authkey, timeout);
    BrokerLink& link = BrokerLink::get(address);
    const Reply r = link.call(Op::create, 0, {kManagerKind, 1, 0, 0, 0});
    return Manager(
        make_handle(link, static_cast<std::uint64_t>(r.value(0)), static_cast<std::uint8_t>(Kind::manager), -1),
        address, true);
}

Manager::Manager(Manager&& other) noexcept
    : handle_(std::move(other.handle_)),
      address_(std::move(other.address_)),
      owner_pid_(other.owner_pid_),
      connected_(other.connected_),
      shut_down_(other.shut_down_) {
    other.handle_ = detail::ObjectHandle();
    other.shut_down_ = true;
}

Manager::~Manager() {
    if (handle_.empty() || shut_down_ || connected_ || detail::broker::current_pid() != owner_pid_) return;
    try {
        shutdown();
    } catch (const ProcessError&) {
        // The broker is gone: there is nothing left to shut down.
    }
}

void Manager::shutdown() {
    if (shut_down_ || handle_.empty()) return;
    shut_down_ = true;
    if (connected_) {
        handle_ = detail::ObjectHandle();
        return;
    }
    (void)detail::managed_call(handle_, detail::managed::Method::shutdown);
}

namespace {

// The answer to name_get or a refused name_bind: the wire, and the references the broker gave
// this process to its objects, as handles (dropped once the caller has made its own).
detail::NamedObject named_object(const detail::ObjectHandle& manager, const std::string& name,
                                 const detail::ManagedReply& reply) {
    detail::NamedObject named{name, std::string(reply.items().at(0)), {}};
    const HandleWire wire = read_handle_wire(named.wire);
    for (const auto& object : wire.objects)
        named.held.push_back(detail::broker::make_handle(*manager.ref().link, object.id, object.kind, -1));
    return named;
}

detail::ManagedItems name_item(const std::string& name) {
    if (name.empty()) throw ValueError("a Manager's name cannot be empty");
    detail::ManagedItems items;
    items.add(name);
    return items;
}

}  // namespace

detail::NamedObject Manager::lookup(const std::string& name) const {
    check_running();
    return named_object(handle_, name,
                        detail::managed_call(handle_, detail::managed::Method::name_get, name_item(name)));
}

std::optional<detail::NamedObject> Manager::find(const std::string& name) const {
    try {
        return lookup(name);
    } catch (const KeyError&) {
        return std::nullopt;
    }
}

std::optional<detail::NamedObject> Manager::bind(const std::string& name, std::string_view packed, bool replace) const {
    check_running();
    // `packed` is in this thread's packing buffer, which packing the other items reuses.
    const std::string bytes(packed);
    detail::ManagedItems items = name_item(name);
    HandleWire wire;
    try {
        wire = read_handle_wire(bytes);
    } catch (const ProtocolError& e) {
        throw ValueError(std::string("Manager.publish: ") + e.what());
    }
    detail::broker::BrokerLink& link = *handle_.ref().link;
    std::vector<std::uint64_t> ids;
    for (const auto& object : wire.objects) {
        if (object.endpoint != link.name())
            throw ValueError("Manager.publish: \"" + name + "\" names an object of another broker than the Manager's");
        ids.push_back(object.id);
    }
    items.add_bytes(wire.without_tokens);
    items.add(ids);
    std::optional<detail::NamedObject> taken;
    {
        // The references packing set aside for a receiver go back (the manager keeps its own).
        struct Reclaim {
            detail::broker::BrokerLink& link;
            const HandleWire& wire;
            ~Reclaim() {
                for (const auto& object : wire.objects) {
                    try {
                        link.claim(object.id, object.token);
                    } catch (const ProcessError&) {
                        continue;  // the broker is gone: nothing to give back
                    }
                    link.drop(object.id);
                }
            }
        } reclaim{link, wire};
        const detail::ManagedReply reply =
            detail::managed_call(handle_, detail::managed::Method::name_bind, std::move(items), replace ? 1 : 0);
        if (reply.result == 0) taken = named_object(handle_, name, reply);
    }
    return taken;
}

std::vector<std::string> Manager::names() const {
    check_running();
    return detail::managed_call(handle_, detail::managed::Method::name_list).all<std::string>();
}

void Manager::unpublish(const std::string& name) const {
    check_running();
    (void)detail::managed_call(handle_, detail::managed::Method::name_remove, name_item(name));
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
