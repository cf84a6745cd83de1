#pragma once
// What the broker tells the run's log (base/log.hpp): a lock freed because its holder died,
// queue items given back because their consumer died or its connection closed, a connection
// refused at HELLO. Each builds its message only when the record would be sent. The broker runs
// these on its own thread: log_record() never waits for the broker, so this cannot deadlock.

#include <sys/types.h>

#include <cstdint>
#include <string_view>

#include "broker/protocol.hpp"

namespace zmp::detail::broker {

struct Client;

/// Python's name for a kind: "Lock", "RLock", "JoinableQueue"...
const char* kind_name(Kind kind);

/// The pid of a client process (server.cpp knows clients; kinds only hold pointers to them).
pid_t client_pid(const Client& client);

/// Warning: `kind` `id` was held by process `holder`, which died; the next acquirer gets it.
void log_lock_freed(Kind kind, std::uint64_t id, pid_t holder);
/// Info: `count` items of queue `id` delivered to a connection of process `consumer` and not
/// taken by it went back to the queue: the process died or that connection closed (a process's
/// death reaches the queue as each of its connections closing, so the two are not told apart).
void log_items_given_back(Kind kind, std::uint64_t id, std::uint32_t count, pid_t consumer);
/// Warning: a HELLO was refused (a connection the broker will not serve).
void log_hello_refused(std::int64_t pid, std::string_view why);
/// Warning: a tcp peer was turned away by the broker's CURVE/ZAP (`description`: transport's describe()).
void log_peer_refused(std::string_view description);

}  // namespace zmp::detail::broker
