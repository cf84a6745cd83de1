#include "broker/status.hpp"

#include <unistd.h>

#include <msgpack.hpp>

#include "broker/events.hpp"

namespace zmp::detail::broker {

namespace {
// A name or host longer than this is not kept (a host name has at most 255 bytes).
constexpr std::size_t kMaxIdentityText = 1024;
}  // namespace

std::string this_host_name() {
    char buffer[256] = {};
    if (::gethostname(buffer, sizeof buffer - 1) != 0 || buffer[0] == '\0') return "localhost";
    return buffer;
}

std::string pack_hello_identity(const HelloIdentity& who) {
    msgpack::sbuffer out;
    msgpack::packer<msgpack::sbuffer> pk(out);
    pk.pack_array(2);
    pk.pack(who.name);
    pk.pack(who.host);
    return std::string(out.data(), out.size());
}

bool unpack_hello_identity(std::string_view frame, HelloIdentity& who) {
    try {
        const msgpack::object_handle handle = msgpack::unpack(frame.data(), frame.size());
        const msgpack::object& o = handle.get();
        if (o.type != msgpack::type::ARRAY || o.via.array.size != 2) return false;
        const msgpack::object& name = o.via.array.ptr[0];
        const msgpack::object& host = o.via.array.ptr[1];
        if (name.type != msgpack::type::STR || host.type != msgpack::type::STR) return false;
        if (name.via.str.size > kMaxIdentityText || host.via.str.size > kMaxIdentityText) return false;
        who.name.assign(name.via.str.ptr, name.via.str.size);
        who.host.assign(host.via.str.ptr, host.via.str.size);
        return true;
    } catch (const std::exception&) {
        return false;
    }
}

std::string pack_broker_status(const BrokerStatus& status) {
    msgpack::sbuffer out;
    msgpack::packer<msgpack::sbuffer> pk(out);
    pk.pack_map(5);
    pk.pack("pid"), pk.pack(status.pid);
    pk.pack("host"), pk.pack(status.host);
    pk.pack("endpoint"), pk.pack(status.endpoint);
    pk.pack("clients");
    pk.pack_array(static_cast<std::uint32_t>(status.clients.size()));
    for (const ClientStatus& c : status.clients) {
        pk.pack_map(6);
        pk.pack("pid"), pk.pack(c.pid);
        pk.pack("name"), pk.pack(c.name);
        pk.pack("host"), pk.pack(c.host);
        pk.pack("connections"), pk.pack(c.connections);
        pk.pack("waiting"), pk.pack(c.waiting);
        pk.pack("references"), pk.pack(c.references);
    }
    pk.pack("objects");
    pk.pack_array(static_cast<std::uint32_t>(status.objects.size()));
    for (const ObjectStatus& o : status.objects) {
        pk.pack_map(static_cast<std::uint32_t>(4 + o.fields.size()));
        pk.pack("kind"), pk.pack(kind_name(o.kind));
        pk.pack("id"), pk.pack(o.id);
        pk.pack("references"), pk.pack(o.references);
        pk.pack("shared"), pk.pack(o.shared);
        for (const auto& [name, value] : o.fields) pk.pack(name), pk.pack(value);
    }
    return std::string(out.data(), out.size());
}

}  // namespace zmp::detail::broker
