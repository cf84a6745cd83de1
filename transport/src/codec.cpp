#include "zmp/transport/codec.hpp"

#include <cxxabi.h>

#include <cstdlib>
#include <memory>
#include <new>

namespace zmp::transport {
namespace {

// msgpack-cxx reserves 24 bytes per declared array element (48 per map pair) before it checks
// that the elements exist, so a 5-byte header can ask for 96 GB. This first pass parses without
// building anything and rejects a frame whose declared element counts, summed over all levels,
// exceed its size (every element takes at least one byte), or that nests too deeply.
class ShapeCheck : public msgpack::v2::null_visitor {
public:
    explicit ShapeCheck(std::size_t size) : budget_(size) {}

    bool start_array(uint32_t n) { return enter(n); }
    bool end_array() {
        --depth_;
        return true;
    }
    bool start_map(uint32_t n) { return enter(std::size_t{n} * 2); }
    bool end_map() {
        --depth_;
        return true;
    }
    void parse_error(std::size_t, std::size_t) { problem_ = "malformed msgpack"; }
    void insufficient_bytes(std::size_t, std::size_t) { problem_ = "truncated msgpack frame"; }

    const char* problem() const { return problem_; }

private:
    bool enter(std::size_t elements) {
        if (++depth_ > kMaxDepth) {
            problem_ = "msgpack nesting is too deep";
            return false;
        }
        if (elements > budget_) {
            problem_ = "msgpack frame declares more elements than it holds";
            return false;
        }
        budget_ -= elements;
        return true;
    }

    std::size_t budget_;
    std::size_t depth_ = 0;
    const char* problem_ = nullptr;
};

}  // namespace

Decoded decode(const void* data, std::size_t size) {
    const char* bytes = static_cast<const char*>(data);
    if (size == 0) throw ProtocolError("empty frame where a msgpack value was expected");
    ShapeCheck check(size);
    std::size_t offset = 0;
    bool ok = false;
    try {
        ok = msgpack::v2::parse(bytes, size, offset, check);
    } catch (const std::exception& e) {
        throw ProtocolError(std::string("malformed msgpack frame: ") + e.what());
    }
    if (!ok) throw ProtocolError(check.problem() ? check.problem() : "malformed msgpack frame");
    if (offset != size) throw ProtocolError("trailing bytes after the msgpack value in a frame");

    const msgpack::unpack_limit limits(size, size / 2 + 1, size, size, size, kMaxDepth);
    try {
        std::size_t off = 0;
        Decoded handle = msgpack::unpack(bytes, size, off, nullptr, nullptr, limits);
        if (off != size) throw ProtocolError("trailing bytes after the msgpack value in a frame");
        return handle;
    } catch (const msgpack::unpack_error& e) {
        throw ProtocolError(std::string("malformed msgpack frame: ") + e.what());
    } catch (const std::bad_alloc&) {
        throw ProtocolError("msgpack frame asks for more memory than it can hold");
    }
}

std::string type_name(const std::type_info& type) {
    int status = 0;
    std::unique_ptr<char, void (*)(void*)> name(abi::__cxa_demangle(type.name(), nullptr, nullptr, &status), std::free);
    return status == 0 && name ? std::string(name.get()) : std::string(type.name());
}

}  // namespace zmp::transport
