// SharedMemory and ShareableList. ShareableList uses Python's own layout (CPython 3.8-3.13; docs/design.md,
// Shared memory), all integers native-endian:
//
//     int64 n | int64 offsets[n + 1] | data area (slots) | char formats[n][8] | int8 codes[n]
//
// offsets[i] is where slot i starts in the data area; formats[i] is item i's struct format
// ("q", "d", "xxxxxxx?", "xxxxxx?x", "<N>s"), NUL-padded; codes[i] says how to turn what that
// format reads back into the item (0 as is, 1 str, 2 bytes, 3 None).

#include "zmp/shared_memory.hpp"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <limits>
#include <ostream>
#include <string_view>

#include "shm/segment.hpp"

namespace zmp {
namespace detail {

struct SharedMemoryState {
    std::string name;  // without the leading '/'
    MappedSegment mapping;
    std::size_t size = 0;
    ~SharedMemoryState() { unmap_segment(mapping); }
};

namespace {

std::shared_ptr<SharedMemoryState> make_state(const std::string& posix_name, MappedSegment mapping) {
    auto state = std::make_shared<SharedMemoryState>();
    state->name = posix_name.substr(1);
    state->mapping = mapping;
    state->size = mapping.size;
    return state;
}

}  // namespace

void throw_wrong_kind(const std::string& received, std::string_view expected) {
    throw ProtocolError("received a " + received + " where a " + std::string(expected) + " was expected");
}

}  // namespace detail

SharedMemory::SharedMemory(std::optional<std::string> name, bool create, std::int64_t size)
    : SharedMemory(SharedMemoryOptions{std::move(name), create, size}) {}

SharedMemory::SharedMemory(const SharedMemoryOptions& options) {
    if (options.size < 0) throw ValueError("'size' must be a positive integer");
    if (options.create && options.size == 0) throw ValueError("'size' must be a positive number different from zero");
    if (!options.name && !options.create) throw ValueError("'name' can only be None if create=True");
    if (!options.create) {
        const std::string posix = detail::posix_segment_name(*options.name);
        state_ = detail::make_state(posix, detail::attach_segment(posix));
        return;
    }
    const auto record = options.track ? detail::RecordSegment::after_create : detail::RecordSegment::no;
    const auto size = static_cast<std::size_t>(options.size);
    if (options.name) {
        const std::string posix = detail::posix_segment_name(*options.name);
        state_ = detail::make_state(posix, detail::create_segment(posix, size, record));
        return;
    }
    for (;;) {  // as Python: a fresh random name until one is free
        const std::string posix = "/psm_" + detail::random_hex(4);
        try {
            state_ = detail::make_state(posix, detail::create_segment(posix, size, record));
            return;
        } catch (const FileExistsError&) {
        }
    }
}

detail::SharedMemoryState& SharedMemory::state() const {
    if (!state_) throw ValueError("empty SharedMemory handle");
    return *state_;
}

std::span<std::byte> SharedMemory::buf() const {
    detail::SharedMemoryState& st = state();
    if (st.mapping.base == nullptr) throw ValueError("shared memory '" + st.name + "' is closed");
    return {st.mapping.base, st.mapping.size};
}

std::size_t SharedMemory::size() const { return state().size; }

const std::string& SharedMemory::name() const { return state().name; }

void SharedMemory::close() { detail::unmap_segment(state().mapping); }

bool SharedMemory::closed() const { return state().mapping.base == nullptr; }

void SharedMemory::unlink() const { detail::unlink_segment("/" + state().name); }

// ---------------------------------------------------------------------------------------------
// ShareableList

namespace {

constexpr std::size_t kSlot = 8;  // Python's _alignment
constexpr std::string_view kBoolFormat = "xxxxxxx?";
constexpr std::string_view kNoneFormat = "xxxxxx?x";
enum Code : std::int8_t { as_is = 0, str_code = 1, bytes_code = 2, none_code = 3 };

const std::string* text_of(const ShareableValue& value) {
    if (auto* s = std::get_if<std::string>(&value)) return s;
    if (auto* b = std::get_if<Bytes>(&value)) return &b->data;
    return nullptr;
}

std::int8_t code_of(const ShareableValue& value) {
    if (std::holds_alternative<std::string>(value)) return str_code;
    if (std::holds_alternative<Bytes>(value)) return bytes_code;
    if (std::holds_alternative<std::nullptr_t>(value)) return none_code;
    return as_is;
}

// The slot a new list gives an item: 8 bytes, or 8 * (len / 8 + 1) for str and bytes.
std::size_t slot_size(const ShareableValue& value) {
    const std::string* text = text_of(value);
    return text ? kSlot * (text->size() / kSlot + 1) : kSlot;
}

// The format an item takes in a slot of `slot` bytes whose current format is `current`.
std::string format_for(const ShareableValue& value, std::size_t slot, std::string_view current) {
    if (text_of(value) != nullptr) return current.ends_with('s') ? std::string(current) : std::to_string(slot) + "s";
    if (std::holds_alternative<std::int64_t>(value)) return "q";
    if (std::holds_alternative<double>(value)) return "d";
    if (std::holds_alternative<bool>(value)) return std::string(kBoolFormat);
    return std::string(kNoneFormat);
}

// The N of an "<N>s" format, which must fit a slot of `slot` bytes; nullopt if it does not.
std::optional<std::size_t> text_width(std::string_view format, std::size_t slot) {
    if (format.size() < 2) return std::nullopt;
    std::size_t width = 0;
    const char* last = format.data() + format.size() - 1;
    auto [end, error] = std::from_chars(format.data(), last, width);
    if (error != std::errc() || end != last || width > slot) return std::nullopt;
    return width;
}

// Writes what Python's struct.pack_into(format, ...) writes for the item; a text format's width
// has been checked against the slot.
void write_item(std::byte* slot, const ShareableValue& value, std::string_view format) {
    if (const std::string* text = text_of(value)) {
        const std::size_t width = *text_width(format, std::numeric_limits<std::size_t>::max());
        std::memset(slot, 0, width);
        std::memcpy(slot, text->data(), std::min(width, text->size()));
    } else if (auto* i = std::get_if<std::int64_t>(&value)) {
        std::memcpy(slot, i, sizeof *i);
    } else if (auto* d = std::get_if<double>(&value)) {
        std::memcpy(slot, d, sizeof *d);
    } else {
        std::memset(slot, 0, kSlot);
        if (auto* b = std::get_if<bool>(&value)) slot[7] = std::byte{*b};
    }
}

bool is_number(const ShareableValue& v) {
    return std::holds_alternative<std::int64_t>(v) || std::holds_alternative<double>(v) ||
           std::holds_alternative<bool>(v);
}

long double number_of(const ShareableValue& v) {
    if (auto* i = std::get_if<std::int64_t>(&v)) return static_cast<long double>(*i);
    if (auto* d = std::get_if<double>(&v)) return *d;
    return std::get<bool>(v) ? 1 : 0;
}

// Python's ==: numbers compare by value whatever their type (long double holds every int64 and
// every double exactly); other types only equal their own.
bool python_equal(const ShareableValue& a, const ShareableValue& b) {
    if (is_number(a) && is_number(b)) return number_of(a) == number_of(b);
    return a == b;
}

std::string quoted(std::string_view text, bool bytes) {
    const bool single = text.find('\'') == std::string_view::npos || text.find('"') != std::string_view::npos;
    const char quote = single ? '\'' : '"';
    std::string out = bytes ? "b" : "";
    out += quote;
    for (char c : text) {
        const auto u = static_cast<unsigned char>(c);
        if (c == quote || c == '\\')
            out += {'\\', c};
        else if (c == '\n')
            out += "\\n";
        else if (c == '\r')
            out += "\\r";
        else if (c == '\t')
            out += "\\t";
        else if (u < 0x20 || u == 0x7f || (bytes && u >= 0x80)) {
            static constexpr char digits[] = "0123456789abcdef";
            out += {'\\', 'x', digits[u >> 4], digits[u & 15]};
        } else {
            out += c;
        }
    }
    out += quote;
    return out;
}

}  // namespace

std::string repr(const ShareableValue& value) {
    if (std::holds_alternative<std::nullptr_t>(value)) return "None";
    if (auto* b = std::get_if<bool>(&value)) return *b ? "True" : "False";
    if (auto* i = std::get_if<std::int64_t>(&value)) return std::to_string(*i);
    if (auto* d = std::get_if<double>(&value)) {
        if (*d != *d) return "nan";
        if (*d == std::numeric_limits<double>::infinity()) return "inf";
        if (*d == -std::numeric_limits<double>::infinity()) return "-inf";
        char buffer[32];
        auto end = std::to_chars(buffer, buffer + sizeof buffer, *d).ptr;
        std::string text(buffer, end);
        if (text.find_first_of(".e") == std::string::npos) text += ".0";
        return text;
    }
    if (auto* s = std::get_if<std::string>(&value)) return quoted(*s, false);
    return quoted(std::get<Bytes>(value).data, true);
}

struct ShareableList::Slot {
    std::size_t position;
    std::byte* data;
    std::size_t size;
};

ShareableList::ShareableList(const std::vector<ShareableValue>& sequence, std::optional<std::string> name) {
    const std::size_t n = sequence.size();
    std::vector<std::string> formats;
    offsets_.assign(1, 0);
    for (const ShareableValue& item : sequence) {
        const std::size_t slot = slot_size(item);
        formats.push_back(format_for(item, slot, ""));
        if (formats.back().size() > kSlot) {
            throw ValueError("a str/bytes item of " + std::to_string(text_of(item)->size()) +
                             " bytes is too large for a ShareableList slot");
        }
        offsets_.push_back(offsets_.back() + static_cast<std::int64_t>(slot));
    }
    const std::size_t data_start = (n + 2) * kSlot;
    const std::size_t formats_start = data_start + static_cast<std::size_t>(offsets_.back());
    const std::size_t total = formats_start + n * kSlot + n;
    shm_ = SharedMemory(std::move(name), true, static_cast<std::int64_t>(total));
    std::byte* base = shm_.buf().data();
    const auto count = static_cast<std::int64_t>(n);
    std::memcpy(base, &count, sizeof count);
    std::memcpy(base + kSlot, offsets_.data(), offsets_.size() * sizeof(std::int64_t));
    for (std::size_t i = 0; i < n; ++i) {
        write_item(base + data_start + offsets_[i], sequence[i], formats[i]);
        std::memcpy(base + formats_start + i * kSlot, formats[i].data(), formats[i].size());
        base[formats_start + n * kSlot + i] = static_cast<std::byte>(code_of(sequence[i]));
    }
}

ShareableList ShareableList::attach(const std::string& name) {
    ShareableList list;
    list.shm_ = SharedMemory(name);
    const std::span<std::byte> buf = list.shm_.buf();
    auto malformed = [&] {
        return ProtocolError("shared memory '" + list.shm_.name() + "' does not hold a ShareableList");
    };
    std::int64_t n = 0;
    if (buf.size() < kSlot) throw malformed();
    std::memcpy(&n, buf.data(), sizeof n);
    // Every item needs 8 bytes of slot, 8 of offset, 8 of format and 1 of code.
    if (n < 0 || static_cast<std::uint64_t>(n) > buf.size() / 25) throw malformed();
    const auto count = static_cast<std::size_t>(n);
    list.offsets_.resize(count + 1);
    std::memcpy(list.offsets_.data(), buf.data() + kSlot, (count + 1) * sizeof(std::int64_t));
    const std::size_t fixed = (count + 2) * kSlot + count * (kSlot + 1);
    if (fixed > buf.size() || list.offsets_[0] != 0) throw malformed();
    const std::size_t room = buf.size() - fixed;
    for (std::size_t i = 0; i < count; ++i) {
        const std::int64_t from = list.offsets_[i], to = list.offsets_[i + 1];
        if (to < from + static_cast<std::int64_t>(kSlot) || static_cast<std::uint64_t>(to) > room) throw malformed();
    }
    return list;
}

std::size_t ShareableList::checked_size() const {
    (void)shm_.buf();  // ValueError if empty or closed
    return offsets_.size() - 1;
}

std::size_t ShareableList::size() const { return checked_size(); }

ShareableList::Slot ShareableList::slot(std::ptrdiff_t index, const char* out_of_range) const {
    const auto n = static_cast<std::ptrdiff_t>(checked_size());
    const std::ptrdiff_t position = index < 0 ? index + n : index;
    if (position < 0 || position >= n) throw IndexError(out_of_range);
    const auto p = static_cast<std::size_t>(position);
    std::byte* data = shm_.buf().data() + (static_cast<std::size_t>(n) + 2) * kSlot + offsets_[p];
    return {p, data, static_cast<std::size_t>(offsets_[p + 1] - offsets_[p])};
}

std::string ShareableList::format_at(std::size_t position) const {
    const std::size_t n = offsets_.size() - 1;
    const std::byte* at = shm_.buf().data() + (n + 2) * kSlot + offsets_[n] + position * kSlot;
    std::string format(reinterpret_cast<const char*>(at), kSlot);
    format.erase(format.find_last_not_of('\0') + 1);
    return format;
}

ShareableValue ShareableList::get(std::ptrdiff_t index) const {
    const Slot s = slot(index, "index out of range");
    const std::size_t n = offsets_.size() - 1;
    const std::string format = format_at(s.position);
    const auto code = static_cast<std::int8_t>(shm_.buf()[(n + 2) * kSlot + offsets_[n] + n * kSlot + s.position]);
    auto malformed = [&] {
        return ProtocolError("ShareableList '" + name() + "' holds an item it cannot read (format '" + format + "')");
    };
    if (code == none_code) return nullptr;
    if (format.ends_with('s')) {
        const std::optional<std::size_t> width = text_width(format, s.size);
        if (!width) throw malformed();
        std::string text(reinterpret_cast<const char*>(s.data), *width);
        text.erase(text.find_last_not_of('\0') + 1);  // Python's rstrip(b'\x00')
        if (code == str_code) return text;
        if (code == bytes_code) return Bytes{std::move(text)};
        throw malformed();
    }
    if (code != as_is) throw malformed();
    if (format == "q") {
        std::int64_t i;
        std::memcpy(&i, s.data, sizeof i);
        return i;
    }
    if (format == "d") {
        double d;
        std::memcpy(&d, s.data, sizeof d);
        return d;
    }
    if (format == kBoolFormat) return s.data[7] != std::byte{0};
    throw malformed();
}

void ShareableList::set(std::ptrdiff_t index, const ShareableValue& value) const {
    const Slot s = slot(index, "assignment index out of range");
    if (const std::string* text = text_of(value); text && text->size() > s.size) {
        throw ValueError("bytes/str item exceeds available storage");
    }
    const std::size_t n = offsets_.size() - 1;
    const std::string format = format_for(value, s.size, format_at(s.position));
    if (format.ends_with('s') && !text_width(format, s.size)) {
        throw ProtocolError("ShareableList '" + name() + "' has a malformed slot " + std::to_string(s.position));
    }
    std::byte* formats = shm_.buf().data() + (n + 2) * kSlot + offsets_[n];
    // As Python: the format and the code first, then the value.
    std::memset(formats + s.position * kSlot, 0, kSlot);
    std::memcpy(formats + s.position * kSlot, format.data(), std::min(format.size(), kSlot));
    formats[n * kSlot + s.position] = static_cast<std::byte>(code_of(value));
    write_item(s.data, value, format);
}

std::size_t ShareableList::count(const ShareableValue& value) const {
    return static_cast<std::size_t>(
        std::count_if(begin(), end(), [&](const ShareableValue& item) { return python_equal(item, value); }));
}

std::size_t ShareableList::index(const ShareableValue& value) const {
    std::size_t position = 0;
    for (const ShareableValue& item : *this) {
        if (python_equal(item, value)) return position;
        ++position;
    }
    throw ValueError(repr(value) + " not in this container");
}

std::string ShareableList::format() const {
    std::string all;
    for (std::size_t i = 0; i < checked_size(); ++i) all += format_at(i);
    return all;
}

std::ostream& operator<<(std::ostream& out, const ShareableList& list) {
    out << "ShareableList([";
    const char* separator = "";
    for (const ShareableValue& item : list) {
        out << separator << repr(item);
        separator = ", ";
    }
    return out << "], name=" << repr(list.name()) << ")";
}

}  // namespace zmp
