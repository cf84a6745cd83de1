#pragma once
// zmp::SharedMemory and zmp::ShareableList: Python's multiprocessing.shared_memory in C++.
//
//     zmp::SharedMemory shm(std::nullopt, true, 1 << 20);   // SharedMemory(create=True, size=1 << 20)
//     zmp::Process p([name = shm.name()] {
//         zmp::SharedMemory mine(name);                      // SharedMemory(name): attach
//         mine.buf()[0] = std::byte{42};
//     });
//     p.start(); p.join();                                   // shm.buf()[0] == std::byte{42}
//     shm.unlink();
//
// Ownership is explicit, as in Python 3.13 with track=False for attachers: close() unmaps this
// process's view, unlink() removes the name, and nothing else ever removes it — dropping a
// handle or exiting only unmaps. In particular an attaching process never unlinks the segment
// when it exits (Python did so until 3.13: docs/design.md, Upstream behaviour zmp works around).
// Only as a last resort, a segment created with track=true (the default) and never unlinked is
// removed when the run's root process exits (or by the next root, if the root was killed), as
// Python's resource tracker does; create with track=false for a segment that must outlive the
// program.
//
// Handles: a SharedMemory is a handle. Copies share one mapping, and close() closes it for all of
// them; the mapping goes when the last copy goes. Separately constructed SharedMemory objects
// for the same name have separate mappings, as in Python. A SharedMemory (or ShareableList) may
// travel in any msgpack value; it travels by name and the receiving process attaches when it
// decodes it (FileNotFoundError if the name is gone), as Python's pickling does.
//
// Threading: the calls below may be made from any thread; the bytes themselves are not
// synchronised (use a zmp lock, or atomics you place in the buffer). close() while another
// thread still uses buf() is the caller's business, as is using a span from buf() after close().

#include <msgpack.hpp>

#include <cstddef>
#include <cstdint>
#include <iosfwd>
#include <iterator>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <variant>
#include <vector>

#include "zmp/detail/handle_codec.hpp"
#include "zmp/errors.hpp"
#include "zmp/function.hpp"

namespace zmp {

namespace detail {
struct SharedMemoryState;
}

/// Python's keyword arguments of SharedMemory, for designated initializers:
///     zmp::SharedMemory shm({.create = true, .size = 4096});
struct SharedMemoryOptions {
    std::optional<std::string> name;  ///< with or without the leading '/'; empty: a new "psm_" name (create only)
    bool create = false;
    std::int64_t size = 0;  ///< bytes; must be positive when creating, ignored when attaching
    bool track = true;      ///< creating: have the root remove it at exit if nobody unlinks it
};

class SharedMemory {
public:
    /// An empty handle; every call on it raises ValueError.
    SharedMemory() = default;

    /// Python's SharedMemory(name=None, create=False, size=0).
    ///  - create: a new zero-filled segment of `size` bytes named `name`, or "psm_" and 8 hex
    ///    digits when no name is given. FileExistsError if the name exists.
    ///  - attach (create false): the existing segment `name`, whole (size is ignored).
    ///    FileNotFoundError if there is none.
    /// ValueError, with Python's messages: size < 0; size 0 with create; no name without create;
    /// a name with a '/' other than a leading one. OSError for other system failures.
    explicit SharedMemory(std::optional<std::string> name, bool create = false, std::int64_t size = 0);
    explicit SharedMemory(const SharedMemoryOptions& options);

    /// The bytes (Python's buf). ValueError once closed.
    std::span<std::byte> buf() const;
    /// The size in bytes (Python's size): the created size, or the whole segment when attached.
    std::size_t size() const;
    /// The name without the leading '/' (Python's name), usable to attach from another process.
    const std::string& name() const;

    /// Unmaps this process's view, for every copy of this handle. Idempotent.
    void close();
    bool closed() const;
    /// Removes the name: nobody can attach any more; existing mappings stay valid until closed.
    /// Any process may call it, once: FileNotFoundError if the name is already gone.
    void unlink() const;

    // For the msgpack adaptor: it travels as its name, and attaches when decoded.
    static constexpr std::string_view wire_kind = "zmp.SharedMemory";
    static SharedMemory attach(const std::string& name) { return SharedMemory(name); }

private:
    detail::SharedMemoryState& state() const;

    std::shared_ptr<detail::SharedMemoryState> state_;
};

/// Python's bytes as a ShareableList item (a std::string item is Python's str).
struct Bytes {
    std::string data;
    bool operator==(const Bytes&) const = default;
};

/// One ShareableList item: None, int (64-bit), float, bool, str or bytes.
using ShareableValue = std::variant<std::nullptr_t, std::int64_t, double, bool, std::string, Bytes>;

/// Python's repr() of an item: None, True, 42, 1.5, 'text', b'bytes'.
std::string repr(const ShareableValue& value);

/// Python's ShareableList: a fixed-length list in one SharedMemory segment, with Python's own
/// layout, so that Python processes can attach to it by name too (and the other way round).
///
///     zmp::ShareableList sl({"howdy", zmp::Bytes{"HoWdY"}, -273.154, 100, nullptr, true, 42});
///     sl[3] = 7;  sl[-1] = "fits";                       // negative indices count from the end
///     zmp::ShareableList other = zmp::ShareableList::attach(sl.name());
///     std::get<std::int64_t>(other.get(3)) == 7;
///
/// Slots are fixed when the list is made: an int, float, bool or None takes 8 bytes, a str or
/// bytes item 8 * (length / 8 + 1) bytes. Any item may later be replaced by one of another type
/// that fits its slot; a longer str or bytes raises ValueError("bytes/str item exceeds available
/// storage"). As in Python, trailing NUL bytes of a str or bytes item are not kept.
///
/// No item access is locked (as in Python): different slots may be written by different
/// processes at once; one slot written while read needs a lock of your own.
///
/// Lifetime is its SharedMemory's (shm()): the creator unlinks it with shm().unlink().
class ShareableList {
public:
    /// A reference to one item, as Python's sl[i]: reads convert it to a ShareableValue, writes
    /// go to the shared slot.  `ShareableValue v = sl[0];  sl[0] = 5;`
    class Item {
    public:
        operator ShareableValue() const { return list_->get(index_); }
        const Item& operator=(const ShareableValue& value) const {
            list_->set(index_, value);
            return *this;
        }
        // A proxy: assigning an item to itself reads its value and writes the same value back.
        // NOLINTNEXTLINE(bugprone-unhandled-self-assignment)
        const Item& operator=(const Item& other) const { return *this = ShareableValue(other); }
        friend bool operator==(const Item& item, const ShareableValue& value) { return ShareableValue(item) == value; }

    private:
        friend class ShareableList;
        Item(const ShareableList* list, std::ptrdiff_t index) : list_(list), index_(index) {}
        const ShareableList* list_;
        std::ptrdiff_t index_;
    };

    /// Reads the items in order, by value.
    class iterator {
    public:
        using iterator_category = std::input_iterator_tag;
        using value_type = ShareableValue;
        using difference_type = std::ptrdiff_t;
        using reference = ShareableValue;
        using pointer = void;
        iterator() = default;
        ShareableValue operator*() const { return list_->get(static_cast<std::ptrdiff_t>(index_)); }
        iterator& operator++() {
            ++index_;
            return *this;
        }
        iterator operator++(int) {
            iterator before = *this;
            ++index_;
            return before;
        }
        bool operator==(const iterator& other) const { return index_ == other.index_; }

    private:
        friend class ShareableList;
        iterator(const ShareableList* list, std::size_t index) : list_(list), index_(index) {}
        const ShareableList* list_ = nullptr;
        std::size_t index_ = 0;
    };

    /// An empty handle; every call on it raises ValueError.
    ShareableList() = default;
    /// Python's ShareableList(sequence, name=name): a new list holding `sequence`, in a new
    /// segment named `name` (FileExistsError if it exists) or "psm_..." when none is given.
    /// ValueError for a str/bytes item of 10,000,000 bytes or more (Python cannot describe its slot).
    explicit ShareableList(const std::vector<ShareableValue>& sequence, std::optional<std::string> name = std::nullopt);
    /// Python's ShareableList(name=name): the existing list `name`. FileNotFoundError if there is
    /// none, ProtocolError if the segment does not hold a ShareableList.
    static ShareableList attach(const std::string& name);

    /// Python's len(sl).
    std::size_t size() const;
    /// Python's sl[i] (negative i counts from the end). IndexError("index out of range").
    ShareableValue get(std::ptrdiff_t index) const;
    /// Python's sl[i] = value. IndexError("assignment index out of range"); ValueError if a str
    /// or bytes value does not fit the slot.
    void set(std::ptrdiff_t index, const ShareableValue& value) const;
    Item operator[](std::ptrdiff_t index) const { return Item(this, index); }
    iterator begin() const { return {this, 0}; }
    iterator end() const { return {this, size()}; }

    /// How many items equal `value` (Python's equality: 1 == 1.0 == True; str and bytes differ).
    std::size_t count(const ShareableValue& value) const;
    /// The position of the first item equal to `value`. ValueError("<repr> not in this container").
    std::size_t index(const ShareableValue& value) const;
    /// Python's format: the struct format of every item, e.g. "8s8sdqxxxxxx?xxxxxxxx?q".
    std::string format() const;

    /// The segment holding the list (Python's shm); its name is the list's name.
    const SharedMemory& shm() const { return shm_; }
    const std::string& name() const { return shm_.name(); }

    /// For the msgpack adaptor: it travels as its name, and attaches when decoded.
    static constexpr std::string_view wire_kind = "zmp.ShareableList";

private:
    struct Slot;
    Slot slot(std::ptrdiff_t index, const char* out_of_range) const;
    std::string format_at(std::size_t position) const;
    std::size_t checked_size() const;

    SharedMemory shm_;
    std::vector<std::int64_t> offsets_;  // n + 1 offsets of the slots in the data area (fixed)
};

/// Python's repr: ShareableList([1, 'a', None], name='psm_1a2b3c4d').
std::ostream& operator<<(std::ostream& out, const ShareableList& list);

namespace detail {
/// SharedMemory and ShareableList on the wire: {kind, name}.
struct SharedNameWire {
    std::string what;
    std::string name;
    MSGPACK_DEFINE(what, name)
};
[[noreturn]] void throw_wrong_kind(const std::string& received, std::string_view expected);

template <class H>
requires std::is_same_v<H, SharedMemory> || std::is_same_v<H, ShareableList>
struct HandleCodec<H> {
    static SharedNameWire to_wire(const H& handle) { return {std::string(H::wire_kind), handle.name()}; }
    static H from_wire(const msgpack::object& obj) {
        auto wire = obj.as<SharedNameWire>();
        if (wire.what != H::wire_kind) throw_wrong_kind(wire.what, H::wire_kind);
        return H::attach(wire.name);
    }
};
}  // namespace detail

}  // namespace zmp
