#pragma once
// msgpack encoding and hardened decoding. Every frame that arrives from another process goes
// through decode(): limits derived from the frame size, the whole frame consumed, nesting depth
// capped, and every msgpack failure (including std::bad_alloc from a lying length header) turned
// into a zmp::ProtocolError.

#include <msgpack.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <typeinfo>
#include <utility>

#include "zmp/errors.hpp"

namespace zmp::transport {

/// Deepest nesting of arrays and maps that decode() accepts.
inline constexpr std::size_t kMaxDepth = 64;

/// A decoded frame: the msgpack object and the zone that owns its memory.
using Decoded = msgpack::object_handle;

/// Decodes exactly one msgpack value spanning all of [data, data+size).
/// Throws ProtocolError for malformed, truncated, trailing-garbage or over-deep input. Strings and
/// binaries are copied into the handle's zone, so the frame may be freed afterwards.
Decoded decode(const void* data, std::size_t size);

/// Human-readable name of a type (demangled), for error messages.
std::string type_name(const std::type_info& type);

/// Converts a decoded object to T; a value of another type raises ProtocolError naming T.
template <class T>
T convert(const msgpack::object& obj) {
    try {
        return obj.as<T>();
    } catch (const std::bad_cast&) {
        throw ProtocolError("received a value that does not convert to " + type_name(typeid(T)));
    }
}

/// Packs one value into a fresh buffer. Types without a msgpack adaptor fail to compile.
template <class T>
msgpack::sbuffer encode(const T& value) {
    msgpack::sbuffer buffer(256);  // most messages are small; the default 8 KiB costs a big malloc
    msgpack::pack(buffer, value);
    return buffer;
}

/// decode() followed by convert<T>().
template <class T>
T decode_as(const void* data, std::size_t size) {
    Decoded handle = decode(data, size);
    return convert<T>(handle.get());
}

}  // namespace zmp::transport
