#include "broker/protocol.hpp"

#include <iterator>

#include "zmp/transport/codec.hpp"
#include "zmp/errors.hpp"

namespace zmp::detail::broker {
namespace {

std::uint64_t as_uint(const msgpack::object& o, const char* what) {
    if (o.type != msgpack::type::POSITIVE_INTEGER)
        throw ProtocolError(std::string("envelope: ") + what + " is not an unsigned integer");
    return o.via.u64;
}

std::int64_t as_int(const msgpack::object& o, const char* what) {
    if (o.type == msgpack::type::POSITIVE_INTEGER) {
        if (o.via.u64 > static_cast<std::uint64_t>(INT64_MAX))
            throw ProtocolError(std::string("envelope: ") + what + " is out of range");
        return static_cast<std::int64_t>(o.via.u64);
    }
    if (o.type == msgpack::type::NEGATIVE_INTEGER) return o.via.i64;
    throw ProtocolError(std::string("envelope: ") + what + " is not an integer");
}

template <std::size_t N>
std::size_t read_ints(const msgpack::object& o, std::array<std::int64_t, N>& out, const char* what) {
    if (o.type != msgpack::type::ARRAY) throw ProtocolError(std::string("envelope: ") + what + " is not an array");
    if (o.via.array.size > N) throw ProtocolError(std::string("envelope: too many ") + what);
    for (std::uint32_t i = 0; i < o.via.array.size; ++i) out[i] = as_int(o.via.array.ptr[i], what);
    return o.via.array.size;
}

void pack_ints(msgpack::packer<msgpack::sbuffer>& pk, std::initializer_list<std::int64_t> ints) {
    pk.pack_array(static_cast<std::uint32_t>(ints.size()));
    for (std::int64_t v : ints) pk.pack(v);
}

}  // namespace

void encode_request(msgpack::sbuffer& out, Op op, std::uint64_t object, std::uint64_t rid,
                    std::initializer_list<std::int64_t> args) {
    msgpack::packer<msgpack::sbuffer> pk(out);
    pk.pack_array(4);
    pk.pack(static_cast<std::uint8_t>(op));
    pk.pack(object);
    pk.pack(rid);
    pack_ints(pk, args);
}

void encode_reply(msgpack::sbuffer& out, std::uint64_t rid, Status status, std::initializer_list<std::int64_t> values,
                  std::string_view text) {
    msgpack::packer<msgpack::sbuffer> pk(out);
    pk.pack_array(4);
    pk.pack(rid);
    pk.pack(static_cast<std::uint8_t>(status));
    pack_ints(pk, values);
    pk.pack_str(static_cast<std::uint32_t>(text.size()));
    pk.pack_str_body(text.data(), static_cast<std::uint32_t>(text.size()));
}

Request decode_request(const void* data, std::size_t size, std::uint64_t* rid_seen) {
    transport::Decoded handle = transport::decode(data, size);
    const msgpack::object& o = handle.get();
    if (o.type != msgpack::type::ARRAY || o.via.array.size != 4) throw ProtocolError("envelope: not a 4-element array");
    const msgpack::object* f = o.via.array.ptr;
    Request r;
    r.rid = as_uint(f[2], "request id");
    if (rid_seen != nullptr) *rid_seen = r.rid;
    const std::uint64_t op = as_uint(f[0], "op");
    if (op == 0 || op > kLastOp) throw ProtocolError("envelope: unknown op " + std::to_string(op));
    r.op = static_cast<Op>(op);
    r.object = as_uint(f[1], "object");
    r.nargs = read_ints(f[3], r.args, "arguments");
    return r;
}

Reply decode_reply(const void* data, std::size_t size) {
    transport::Decoded handle = transport::decode(data, size);
    const msgpack::object& o = handle.get();
    if (o.type != msgpack::type::ARRAY || o.via.array.size != 4)
        throw ProtocolError("broker reply: not a 4-element array");
    const msgpack::object* f = o.via.array.ptr;
    Reply r;
    r.rid = as_uint(f[0], "request id");
    const std::uint64_t status = as_uint(f[1], "status");
    if (status > kLastStatus) throw ProtocolError("broker reply: unknown status");
    r.status = static_cast<Status>(status);
    r.nvalues = read_ints(f[2], r.values, "values");
    if (f[3].type != msgpack::type::STR) throw ProtocolError("broker reply: text is not a string");
    r.text.assign(f[3].via.str.ptr, f[3].via.str.size);
    return r;
}

const char* op_name(Op op) {
    static constexpr const char* names[] = {
        "?",
        "hello",
        "create",
        "acquire",
        "release",
        "release_all",
        "owned",
        "get_value",
        "event_set",
        "event_clear",
        "event_is_set",
        "event_wait",
        "cond_wait",
        "cond_notify",
        "barrier_wait",
        "barrier_done",
        "barrier_abort",
        "barrier_reset",
        "barrier_state",
        "stats",
        "keep_holdings",
        "queue_put",
        "queue_get",
        "queue_taken",
        "queue_size",
        "task_done",
        "queue_join",
        "ref_drop",
        "ref_hold",
        "ref_claim",
        "fork_hold",
        "ref_sync",
        "manager_call",
        "status",
    };
    static_assert(std::size(names) == kLastOp + 1, "one name per op");
    const auto index = static_cast<std::size_t>(op);
    return index < std::size(names) ? names[index] : "?";
}

void append_item(std::string& batch, std::string_view item) {
    const auto n = static_cast<std::uint32_t>(item.size());
    const char header[4] = {static_cast<char>(n), static_cast<char>(n >> 8), static_cast<char>(n >> 16),
                            static_cast<char>(n >> 24)};
    batch.append(header, 4);
    batch.append(item);
}

std::vector<std::string_view> split_batch_views(std::string_view batch, std::size_t count) {
    std::vector<std::string_view> items;
    if (count > batch.size() / 4) throw ProtocolError("queue batch: more items announced than it can hold");
    items.reserve(count);
    std::size_t at = 0;
    for (std::size_t i = 0; i < count; ++i) {
        if (batch.size() - at < 4) throw ProtocolError("queue batch: truncated");
        const auto* p = reinterpret_cast<const unsigned char*>(batch.data() + at);
        const std::size_t n = p[0] | (p[1] << 8) | (p[2] << 16) | (static_cast<std::size_t>(p[3]) << 24);
        at += 4;
        if (batch.size() - at < n) throw ProtocolError("queue batch: truncated item");
        items.emplace_back(batch.substr(at, n));
        at += n;
    }
    if (at != batch.size()) throw ProtocolError("queue batch: bytes after the last item");
    return items;
}

}  // namespace zmp::detail::broker
