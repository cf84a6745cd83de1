#pragma once
// zmp::AnyValue: one msgpack value of any type, kept packed. It is what a Python program puts on a
// queue without declaring a type: zmp::Queue<> carries AnyValues, so one queue can hold ints,
// strings and lists side by side, and each consumer asks for the type it expects.
//
//     zmp::Queue<> q;                         // zmp::Queue<zmp::AnyValue>
//     q.put(42); q.put("text"); q.put(std::vector<int>{1, 2});
//     zmp::AnyValue v = q.get();
//     if (v.is<int>()) use(v.as<int>());
//
// An AnyValue travels anywhere a value does (a Pipe, a Process or Pool argument, inside a tuple),
// and arrives as the same msgpack value.
//
// Errors: as<T>() raises ProtocolError when the value does not convert to T; from_bytes() raises
// ProtocolError for bytes that are not exactly one well-formed msgpack value.
//
// Threading: a plain value type (no shared state).

#include <msgpack.hpp>

#include <string>
#include <string_view>
#include <type_traits>

#include "zmp/function.hpp"
#include "zmp/transport/codec.hpp"

namespace zmp {

class AnyValue {
public:
    /// msgpack nil (Python's None).
    AnyValue() : bytes_("\xc0", 1) {}

    /// Packs `value` now: serialization errors are raised here.
    template <class T>
    requires(!std::is_same_v<std::remove_cvref_t<T>, AnyValue> && is_packable_v<std::remove_cvref_t<T>>)
        AnyValue(const T& value) {  // NOLINT: implicit, so that q.put(42) works on a Queue<>
        const msgpack::sbuffer buffer = transport::encode(value);
        // Made, not assigned: GCC 12 warns (-Wrestrict, a false positive) on assign() in Release.
        bytes_ = std::string(buffer.data(), buffer.size());
    }
    AnyValue(const char* text) : AnyValue(std::string(text)) {}  // NOLINT: a string literal is a string

    /// The value of these msgpack bytes. ProtocolError unless they are exactly one value.
    static AnyValue from_bytes(std::string_view bytes) {
        (void)transport::decode(bytes.data(), bytes.size());
        AnyValue value;
        value.bytes_.assign(bytes.data(), bytes.size());
        return value;
    }

    /// The value as a T. ProtocolError if it does not convert (a string asked for as an int).
    template <class T>
    T as() const {
        return transport::decode_as<T>(bytes_.data(), bytes_.size());
    }
    /// Whether as<T>() would succeed.
    template <class T>
    bool is() const {
        try {
            (void)as<T>();
            return true;
        } catch (const ProtocolError&) {
            return false;
        }
    }
    bool is_nil() const { return bytes_.size() == 1 && bytes_[0] == '\xc0'; }

    /// The packed value.
    const std::string& bytes() const { return bytes_; }

    bool operator==(const AnyValue& other) const = default;

private:
    std::string bytes_;
};

template <>
struct is_packable<AnyValue> : std::true_type {};

}  // namespace zmp

namespace msgpack {
MSGPACK_API_VERSION_NAMESPACE(MSGPACK_DEFAULT_API_NS) {
    namespace adaptor {

    // Inside another value, an AnyValue is the value it holds.
    template <>
    struct pack<zmp::AnyValue> {
        template <class Stream>
        packer<Stream>& operator()(packer<Stream>& out, const zmp::AnyValue& value) const {
            const zmp::transport::Decoded held = zmp::transport::decode(value.bytes().data(), value.bytes().size());
            return out.pack(held.get());
        }
    };

    template <>
    struct convert<zmp::AnyValue> {
        const msgpack::object& operator()(const msgpack::object& obj, zmp::AnyValue& value) const {
            msgpack::sbuffer buffer;
            msgpack::pack(buffer, obj);
            value = zmp::AnyValue::from_bytes(std::string_view(buffer.data(), buffer.size()));
            return obj;
        }
    };

    }  // namespace adaptor
}
}  // namespace msgpack
