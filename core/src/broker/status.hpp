#pragma once
// The broker's answer to a status request (Op::status), read by zmp-status: the client processes
// it serves and every object it owns, packed as one msgpack map in the reply's second frame:
//
//   {"pid": broker pid, "host": its host name, "endpoint": where it serves,
//    "clients": [{"pid", "name", "host", "connections", "waiting", "references"}...],
//    "objects": [{"kind": "Lock"|"Queue"|..., "id", "references", "shared": in the arena,
//                 <the kind's fields: objects/object.hpp, describe(); fast_path.hpp, describe_slot()>}...]}
//
// A client's name and host are what its HELLO told in its second frame (pack_hello_identity: the
// process's name, e.g. "Process-1", and its host name); empty if it told none.
// A Lock's or RLock's fields name its holder by pid ("holder_pid", 0 when free; "owner_died": 1
// when its owner died and nobody has taken it since); a queue's say its "depth" and its
// "waiting_consumers"; a barrier's its "parties" and "n_waiting". Numbers are a picture of one
// moment of the broker's loop.

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "broker/objects/object.hpp"

namespace zmp::detail::broker {

struct ClientStatus {
    pid_t pid = 0;
    std::string name;
    std::string host;
    std::int64_t connections = 0;
    std::int64_t waiting = 0;     // its requests waiting for an answer
    std::int64_t references = 0;  // object references it holds
};

struct ObjectStatus {
    Kind kind{};
    std::uint64_t id = 0;
    std::int64_t references = 0;
    bool shared = false;
    StatusFields fields;
};

struct BrokerStatus {
    pid_t pid = 0;
    std::string host;
    std::string endpoint;
    std::vector<ClientStatus> clients;
    std::vector<ObjectStatus> objects;
};

/// The reply's second frame.
std::string pack_broker_status(const BrokerStatus& status);

/// What a client tells of itself in HELLO's second frame: a msgpack array [name, host].
struct HelloIdentity {
    std::string name;
    std::string host;
};
std::string pack_hello_identity(const HelloIdentity& who);
/// False (and `who` unchanged) for a frame that is not one.
bool unpack_hello_identity(std::string_view frame, HelloIdentity& who);

/// This machine's host name ("localhost" if it has none).
std::string this_host_name();

}  // namespace zmp::detail::broker
