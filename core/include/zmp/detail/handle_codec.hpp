#pragma once
// One msgpack adaptor for every zmp handle that travels in messages (Lock, Queue, Value,
// SharedMemory...). A handle type opts in by specialising HandleCodec:
//
//     template <> struct zmp::detail::HandleCodec<MyHandle> {
//         static MyWire to_wire(const MyHandle& h);                   // any value msgpack packs
//         static MyHandle from_wire(const msgpack::object& obj);      // ProtocolError if it is not one
//     };
//
// and then packs, converts, decodes by value (msgpack's `as`, for handles without an empty state)
// and counts as zmp::is_packable. Internal: part of the public headers only because templates
// need it.

#include <msgpack.hpp>

#include <concepts>
#include <type_traits>

#include "zmp/function.hpp"

namespace zmp::detail {

template <class H>
struct HandleCodec;

template <class H>
concept CodecHandle = requires(const H& handle, const msgpack::object& obj) {
    HandleCodec<H>::to_wire(handle);
    { HandleCodec<H>::from_wire(obj) } -> std::same_as<H>;
};

}  // namespace zmp::detail

namespace zmp {
template <detail::CodecHandle H>
struct is_packable<H> : std::true_type {};
}  // namespace zmp

namespace msgpack {
MSGPACK_API_VERSION_NAMESPACE(MSGPACK_DEFAULT_API_NS) {
    namespace adaptor {

    template <zmp::detail::CodecHandle H>
    struct pack<H> {
        template <class Stream>
        packer<Stream>& operator()(packer<Stream>& out, const H& handle) const {
            return out.pack(zmp::detail::HandleCodec<H>::to_wire(handle));
        }
    };

    template <zmp::detail::CodecHandle H>
    struct convert<H> {
        const msgpack::object& operator()(const msgpack::object& obj, H& handle) const {
            handle = zmp::detail::HandleCodec<H>::from_wire(obj);
            return obj;
        }
    };

    template <zmp::detail::CodecHandle H>
    struct as<H> {
        H operator()(const msgpack::object& obj) const { return zmp::detail::HandleCodec<H>::from_wire(obj); }
    };

    }  // namespace adaptor
}
}  // namespace msgpack
