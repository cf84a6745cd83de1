#pragma once
// Reading the messages of a pool link (the wire is in dispatcher.hpp) into values, apart from what
// each side then does with them, so that the reading can be exercised on its own (tests/fuzz).
// Each reader takes a decoded message from the other side, trusts none of its numbers or shapes,
// and throws ProtocolError for what it cannot read; it never allocates by an announced size.
// The task frame itself ([0, definitions, tasks]) is read by TaskServer::serve (task_server.hpp),
// which runs each task as it reads it.

#include <msgpack.hpp>

#include <cstdint>
#include <optional>
#include <string>

#include "pool/dispatcher.hpp"
#include "zmp/exceptions.hpp"

namespace zmp::detail {

/// A message from a worker to the dispatcher, read but not acted on.
struct WorkerMessage {
    int kind = 0;  // 0 results, 1 the initializer failed; the tcp kinds (JoinKind) carry nothing read here
    ErrorRecord initializer_error;             // kind 1
    const msgpack::object* results = nullptr;  // kind 0: an array of entries, each read by read_result()
    std::uint64_t busy_us = 0;                 // kind 0: time the worker spent on them
};

/// Reads [0, results, busy µs] or [1, ErrorRecord]; any other kind is returned with only `kind` set
/// (the caller decides whether it means anything on its link). ProtocolError: not a [kind, ...]
/// array of at least two elements, or a kind 0 or 1 message of the wrong shape.
/// `message` must outlive the returned value (it points into it).
WorkerMessage read_worker_message(const msgpack::object& message);

/// One entry of a results array, read but not yet matched with a task.
struct WorkerResult {
    enum class Status { values, error, bad_status };
    std::uint64_t id = 0;
    Status status = Status::bad_status;
    const msgpack::object* values = nullptr;  // Status::values: the payload, not yet checked against the task
    std::optional<ErrorRecord> error;         // Status::error: the record, or nullopt if it does not decode
};

/// Reads [task id, ok, payload]. ProtocolError: another shape, or an id that is not a uint64.
/// A status that is not a boolean, or an error record that does not decode, fails only that task
/// (returned as such, not thrown).
WorkerResult read_result(const msgpack::object& entry);

/// A message from the pool to a worker joined over tcp, read but not acted on.
struct PoolMessage {
    int kind = 0;                        // 0 a request of tasks (TaskServer::serve reads it), or a JoinKind
    std::optional<JoinWelcome> welcome;  // kJoinWelcome
    std::string refusal;                 // kJoinRefused: the reason ("no reason given" if none came)
};

/// Reads what a joined worker receives. ProtocolError: not a [kind, ...] array, or a welcome or
/// refusal of the wrong shape. A welcome of any other size than two is ignored, as are kinds that
/// mean nothing to a worker.
PoolMessage read_pool_message(const msgpack::object& message);

}  // namespace zmp::detail
