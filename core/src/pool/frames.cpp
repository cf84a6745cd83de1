#include "pool/frames.hpp"

#include "zmp/errors.hpp"
#include "zmp/transport/codec.hpp"

namespace zmp::detail {

WorkerMessage read_worker_message(const msgpack::object& message) {
    if (message.type != msgpack::type::ARRAY || message.via.array.size < 2) {
        throw ProtocolError("a message that is not a [kind, ...] array");
    }
    WorkerMessage read;
    read.kind = transport::convert<int>(message.via.array.ptr[0]);
    if (read.kind == 1 && message.via.array.size == 2) {
        read.initializer_error = transport::convert<ErrorRecord>(message.via.array.ptr[1]);
    } else if (read.kind == 0) {
        if (message.via.array.size != 3) throw ProtocolError("a message of an unknown kind");
        read.busy_us = transport::convert<std::uint64_t>(message.via.array.ptr[2]);
        read.results = &message.via.array.ptr[1];
        if (read.results->type != msgpack::type::ARRAY) throw ProtocolError("results that are not an array");
    } else if (read.kind == 1) {
        throw ProtocolError("a message of an unknown kind");
    }
    return read;
}

WorkerResult read_result(const msgpack::object& entry) {
    if (entry.type != msgpack::type::ARRAY || entry.via.array.size != 3) {
        throw ProtocolError("a result that is not a [task id, ok, values] array");
    }
    WorkerResult read;
    read.id = transport::convert<std::uint64_t>(entry.via.array.ptr[0]);
    const msgpack::object& ok = entry.via.array.ptr[1];
    const msgpack::object& payload = entry.via.array.ptr[2];
    if (ok.type != msgpack::type::BOOLEAN) {
        read.status = WorkerResult::Status::bad_status;
    } else if (ok.via.boolean) {
        read.status = WorkerResult::Status::values;
        read.values = &payload;
    } else {
        read.status = WorkerResult::Status::error;
        try {
            read.error = transport::convert<ErrorRecord>(payload);
        } catch (const ProcessError&) {
            read.error.reset();
        }
    }
    return read;
}

PoolMessage read_pool_message(const msgpack::object& message) {
    if (message.type != msgpack::type::ARRAY || message.via.array.size < 1) {
        throw ProtocolError("a message that is not a [kind, ...] array");
    }
    PoolMessage read;
    read.kind = transport::convert<int>(message.via.array.ptr[0]);
    if (read.kind == kJoinWelcome && message.via.array.size == 2) {
        read.welcome = transport::convert<JoinWelcome>(message.via.array.ptr[1]);
    } else if (read.kind == kJoinRefused) {
        read.refusal = message.via.array.size == 2 ? transport::convert<std::string>(message.via.array.ptr[1])
                                                   : std::string("no reason given");
    }
    return read;
}

}  // namespace zmp::detail
