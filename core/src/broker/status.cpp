#include "broker/status.hpp"

#include <unistd.h>

#include <msgpack.hpp>

#include "broker/events.hpp"

namespace zmp::detail::broker {

std::string this_host_name() {
    char buffer[256] = {};
    if (::gethostname(buffer, sizeof buffer - 1) != 0 || buffer[0] == '\0') return "localhost";
    return buffer;
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
        pk.pack_map(5);
        pk.pack("pid"), pk.pack(c.pid);
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
