// The Manager's shared objects in the broker: a dict (and a Namespace, a dict of named fields), a
// list, a Value, and the manager that made them. They are broker objects like a Lock or a Queue:
// handles count them, the last one frees them, and requests are checked before anything changes.
// The wire is in zmp/detail/managed_wire.hpp.
//
// Values are kept as their msgpack bytes, never decoded except to add (increment), to order
// (sort) and to show in an error's text. Two values are equal when their bytes are: msgpack packs
// an integer in its shortest form whatever its C++ type, and a whole double as that integer, so
// 7, 7u and 7.0 are one value (as in Python); a float and a double of one value differ.
//
// A manager's objects know it through a state they share: when it shuts down (shutdown(), its
// handle's last copy gone, or the process that made it died), every one of them is emptied and
// answers every call from then on with the outcome shut_down.
#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>
#include <list>
#include <map>
#include <mutex>
#include <sstream>
#include <unordered_map>

#include "broker/events.hpp"
#include "broker/objects/kinds.hpp"
#include "zmp/detail/managed_wire.hpp"
#include "zmp/errors.hpp"
#include "zmp/transport/codec.hpp"

namespace zmp::detail::broker {
namespace {

using managed::Method;
using managed::Outcome;

class ManagedObject;

// An object published under a name: its handle's wire (tokens 0) and the objects in it, each of
// which the manager keeps a reference to.
struct Named {
    std::string wire;
    std::vector<std::uint64_t> ids;
};

// What a manager's objects share: whether it has shut down, who they are (to empty them then),
// and its named objects.
struct ManagerState {
    bool shut_down = false;
    std::vector<ManagedObject*> members;
    std::map<std::string, Named, std::less<>> names;
};

// Managers by (broker, id): an object of a manager is made knowing its manager's id only. Several
// brokers may run in one process, each on its own thread. Never destroyed: a broker may free its
// objects during static destruction. `served`: the manager each broker serves on its address
// (PUBLISH), which programs that connect join (CREATE [manager, 1]).
struct ManagerRegistry {
    std::mutex mutex;
    std::map<std::pair<const Services*, std::uint64_t>, std::shared_ptr<ManagerState>> by_id;
    std::map<const Services*, std::shared_ptr<ManagerState>> served;
};
ManagerRegistry& managers() {
    static auto* registry = new ManagerRegistry();
    return *registry;
}

// A referent's exception: the call is answered with this outcome, and the object is unchanged.
struct Failed {
    Outcome outcome;
    std::string text;
};
[[noreturn]] void fail(Outcome outcome, std::string text) { throw Failed{outcome, std::move(text)}; }

// A MANAGER_CALL, read and checked.
struct Call {
    Method method{};
    std::vector<std::string_view> items;
    const Request* req = nullptr;

    /// Integer argument i after [method, count]; protocol_error when it is missing.
    std::int64_t int_arg(std::size_t i) const { return arg(*req, 2 + i); }
    /// Exactly n items, or a protocol_error refusal.
    void need(std::size_t n) const {
        if (items.size() != n)
            refuse(Status::protocol_error, "manager_call: " + std::to_string(n) + " items expected, " +
                                               std::to_string(items.size()) + " given");
    }
};

// Whether item i of `method` may be empty ("absent").
bool may_be_absent(Method method, std::size_t i) {
    return (method == Method::compare_and_set && i == 1) || (method == Method::value_compare_and_set && i == 0);
}

Call read_call(const Request& req) {
    Call call;
    call.req = &req;
    const std::int64_t method = arg(req, 0);
    if (method < 1 || method > managed::kLastMethod) refuse(Status::protocol_error, "manager_call: unknown method");
    call.method = static_cast<Method>(method);
    const std::int64_t count = arg(req, 1);
    if (count < 0) refuse(Status::protocol_error, "manager_call: a negative item count");
    if (count > 0 || req.payload != nullptr) {
        if (req.payload == nullptr) refuse(Status::protocol_error, "manager_call: items announced, none sent");
        try {
            call.items = split_batch_views(*req.payload, static_cast<std::size_t>(count));
        } catch (const ProtocolError& e) {
            refuse(Status::protocol_error, std::string("manager_call: ") + e.what());
        }
    }
    for (std::size_t i = 0; i < call.items.size(); ++i) {
        const std::string_view item = call.items[i];
        if (item.empty()) {
            if (may_be_absent(call.method, i)) continue;
            refuse(Status::protocol_error, "manager_call: item " + std::to_string(i) + " is empty");
        }
        try {
            (void)transport::decode(item.data(), item.size());
        } catch (const ProtocolError& e) {
            refuse(Status::protocol_error,
                   "manager_call: item " + std::to_string(i) + " is not one msgpack value (" + e.what() + ")");
        }
    }
    return call;
}

// A value as the text of an error (Python shows its repr), cut short when long.
std::string show(std::string_view item) {
    std::ostringstream text;
    try {
        transport::Decoded decoded = transport::decode(item.data(), item.size());
        text << decoded.get();
    } catch (const ProtocolError&) {
        text << "<" << item.size() << " bytes>";
    }
    std::string s = text.str();
    if (s.size() > 200) s = s.substr(0, 197) + "...";
    return s;
}

// ---- numbers, for increment ---------------------------------------------------------------------

struct Number {
    bool is_float = false;
    std::int64_t i = 0;
    double f = 0;
};

Number number_of(std::string_view item, const char* what) {
    transport::Decoded decoded = transport::decode(item.data(), item.size());
    const msgpack::object& o = decoded.get();
    switch (o.type) {
        case msgpack::type::POSITIVE_INTEGER:
            if (o.via.u64 > static_cast<std::uint64_t>(INT64_MAX)) fail(Outcome::value_error, "integer overflow");
            return {false, static_cast<std::int64_t>(o.via.u64), 0};
        case msgpack::type::NEGATIVE_INTEGER:
            return {false, o.via.i64, 0};
        case msgpack::type::FLOAT32:
        case msgpack::type::FLOAT64:
            return {true, 0, o.via.f64};
        default:
            fail(Outcome::type_error, std::string(what) + " is not a number: " + show(item));
    }
}

// current + delta, packed; TypeError unless both are numbers, ValueError when an integer overflows.
std::string add(std::string_view current, std::string_view delta) {
    const Number a = number_of(current, "the value");
    const Number b = number_of(delta, "the increment");
    msgpack::sbuffer out(16);
    if (a.is_float || b.is_float) {
        const double x = a.is_float ? a.f : static_cast<double>(a.i);
        const double y = b.is_float ? b.f : static_cast<double>(b.i);
        msgpack::pack(out, x + y);
    } else {
        std::int64_t sum = 0;
        if (__builtin_add_overflow(a.i, b.i, &sum)) fail(Outcome::value_error, "integer overflow");
        msgpack::pack(out, sum);
    }
    return std::string(out.data(), out.size());
}

const std::string kZero("\x00", 1);  // msgpack 0: what a missing key counts as

// ---- order, for sort ----------------------------------------------------------------------------

const char* type_name(const msgpack::object& o) {
    switch (o.type) {
        case msgpack::type::NIL:
            return "None";
        case msgpack::type::BOOLEAN:
            return "bool";
        case msgpack::type::POSITIVE_INTEGER:
        case msgpack::type::NEGATIVE_INTEGER:
            return "int";
        case msgpack::type::FLOAT32:
        case msgpack::type::FLOAT64:
            return "float";
        case msgpack::type::STR:
            return "str";
        case msgpack::type::BIN:
            return "bytes";
        case msgpack::type::ARRAY:
            return "list";
        case msgpack::type::MAP:
            return "dict";
        default:
            return "ext";
    }
}

bool is_number(const msgpack::object& o) {
    return o.type == msgpack::type::POSITIVE_INTEGER || o.type == msgpack::type::NEGATIVE_INTEGER ||
           o.type == msgpack::type::FLOAT32 || o.type == msgpack::type::FLOAT64 || o.type == msgpack::type::BOOLEAN;
}

bool is_integer(const msgpack::object& o) {
    return o.type == msgpack::type::POSITIVE_INTEGER || o.type == msgpack::type::NEGATIVE_INTEGER ||
           o.type == msgpack::type::BOOLEAN;
}

int compare_bytes(const char* a, std::size_t na, const char* b, std::size_t nb) {
    const int c = std::memcmp(a, b, std::min(na, nb));
    if (c != 0) return c < 0 ? -1 : 1;
    return na < nb ? -1 : (na > nb ? 1 : 0);
}

// Python's ordering of two values: numbers by value, strings and bytes lexicographically, lists
// element by element. TypeError for anything else (None, dicts, a str against an int).
int order(const msgpack::object& a, const msgpack::object& b) {
    if (is_number(a) && is_number(b)) {
        if (is_integer(a) && is_integer(b)) {
            // An integer is a u64 (POSITIVE_INTEGER, bool) or a negative i64.
            const bool neg_a = a.type == msgpack::type::NEGATIVE_INTEGER;
            const bool neg_b = b.type == msgpack::type::NEGATIVE_INTEGER;
            if (neg_a != neg_b) return neg_a ? -1 : 1;
            if (neg_a) return a.via.i64 < b.via.i64 ? -1 : (a.via.i64 > b.via.i64 ? 1 : 0);
            const std::uint64_t x = a.type == msgpack::type::BOOLEAN ? a.via.boolean : a.via.u64;
            const std::uint64_t y = b.type == msgpack::type::BOOLEAN ? b.via.boolean : b.via.u64;
            return x < y ? -1 : (x > y ? 1 : 0);
        }
        const auto as_long_double = [](const msgpack::object& o) -> long double {
            switch (o.type) {
                case msgpack::type::POSITIVE_INTEGER:
                    return static_cast<long double>(o.via.u64);
                case msgpack::type::NEGATIVE_INTEGER:
                    return static_cast<long double>(o.via.i64);
                case msgpack::type::BOOLEAN:
                    return o.via.boolean ? 1 : 0;
                default:
                    return o.via.f64;
            }
        };
        const long double x = as_long_double(a), y = as_long_double(b);
        if (std::isnan(x) || std::isnan(y)) return 0;  // NaN is neither smaller nor larger
        return x < y ? -1 : (x > y ? 1 : 0);
    }
    if (a.type == msgpack::type::STR && b.type == msgpack::type::STR)
        return compare_bytes(a.via.str.ptr, a.via.str.size, b.via.str.ptr, b.via.str.size);
    if (a.type == msgpack::type::BIN && b.type == msgpack::type::BIN)
        return compare_bytes(a.via.bin.ptr, a.via.bin.size, b.via.bin.ptr, b.via.bin.size);
    if (a.type == msgpack::type::ARRAY && b.type == msgpack::type::ARRAY) {
        const std::uint32_t n = std::min(a.via.array.size, b.via.array.size);
        for (std::uint32_t i = 0; i < n; ++i) {
            const int c = order(a.via.array.ptr[i], b.via.array.ptr[i]);
            if (c != 0) return c;
        }
        return a.via.array.size < b.via.array.size ? -1 : (a.via.array.size > b.via.array.size ? 1 : 0);
    }
    fail(Outcome::type_error,
         std::string("'<' not supported between instances of '") + type_name(a) + "' and '" + type_name(b) + "'");
}

// The state of manager `manager_id` of this broker; refuses a manager that does not exist or has
// shut down.
std::shared_ptr<ManagerState> manager_of(Services& s, std::int64_t manager_id) {
    std::lock_guard lock(managers().mutex);
    auto it = managers().by_id.find({&s, static_cast<std::uint64_t>(manager_id)});
    if (it == managers().by_id.end()) refuse(Status::value_error, "no such Manager (it has shut down)");
    if (it->second->shut_down) refuse(Status::value_error, "the Manager has shut down");
    return it->second;
}

// CREATE [kind, manager id, 0, 0, 0] of a dict, Namespace, list or Value.
template <class T>
std::unique_ptr<Object> make_managed(Services& s, std::uint64_t id, const CreateArgs& args) {
    return std::make_unique<T>(id, args.kind, manager_of(s, args.value));
}

// Answers a MANAGER_CALL ok: `result` and the items in `batch` (made with append_item), `count` of them.
void answer(Services& s, const Caller& caller, const Call& call, std::int64_t result = 0, std::string batch = {},
            std::size_t count = 0) {
    const std::initializer_list<std::int64_t> values = {0, result, static_cast<std::int64_t>(count)};
    if (count == 0) {
        (void)s.reply(caller, call.req->rid, Status::ok, values);
    } else {
        (void)s.reply_with_batch(caller, call.req->rid, values, std::move(batch));
    }
}
void answer_item(Services& s, const Caller& caller, const Call& call, std::string_view item, std::int64_t result = 0) {
    std::string batch;
    append_item(batch, item);
    answer(s, caller, call, result, std::move(batch), 1);
}
// Answers with the referent's exception.
void answer_failed(Services& s, const Caller& caller, const Request& req, const Failed& f) {
    (void)s.reply(caller, req.rid, Status::ok, {static_cast<std::int64_t>(f.outcome)}, f.text);
}

// ---- what every object of a manager shares ----------------------------------------------------

class ManagedObject : public Object {
public:
    ManagedObject(std::uint64_t id, Kind kind, std::shared_ptr<ManagerState> manager)
        : Object(id, kind), manager_(std::move(manager)) {
        manager_->members.push_back(this);
    }
    ~ManagedObject() override { std::erase(manager_->members, this); }

    // MANAGER_CALL
    void call(Services& s, const Caller& caller, const Request& req) {
        const Call call = read_call(req);
        if (manager_->shut_down) {
            (void)s.reply(caller, req.rid, Status::ok, {static_cast<std::int64_t>(Outcome::shut_down)},
                          "the Manager that made this object has shut down");
            return;
        }
        try {
            serve(s, caller, call);
        } catch (const Failed& f) {
            answer_failed(s, caller, req, f);
        }
    }

    /// At shutdown: lets go of every value.
    virtual void empty() = 0;

    // For zmp-status: whether its manager has shut down, and the kind's own fields.
    void describe(Services& /*s*/, StatusFields& out) const override {
        out.emplace_back("shut_down", manager_->shut_down ? 1 : 0);
        describe_contents(out);
    }
    virtual void describe_contents(StatusFields& /*out*/) const {}

    // No call of these objects waits.
    void on_timeout(Services&, WaiterId) override {}
    void drop_waiter(Services&, WaiterId) override {}

protected:
    virtual void serve(Services& s, const Caller& caller, const Call& call) = 0;

    [[noreturn]] void not_mine(const Call& call, const char* what) const {
        refuse(Status::protocol_error,
               "manager_call: method " + std::to_string(static_cast<int>(call.method)) + " does not apply to " + what);
    }

private:
    std::shared_ptr<ManagerState> manager_;
};

// ---- dict and Namespace -----------------------------------------------------------------------

class MappingObject final : public ManagedObject {
public:
    using ManagedObject::ManagedObject;

    void empty() override {
        index_.clear();
        order_.clear();
    }

protected:
    void serve(Services& s, const Caller& caller, const Call& call) override {
        const auto& items = call.items;
        switch (call.method) {
            case Method::getitem: {
                call.need(1);
                return answer_item(s, caller, call, found(items[0])->second->second);
            }
            case Method::get: {
                call.need(1);
                auto it = index_.find(items[0]);
                if (it == index_.end()) return answer(s, caller, call, 0);
                return answer_item(s, caller, call, it->second->second, 1);
            }
            case Method::setitem:
                call.need(2);
                set(items[0], items[1]);
                return answer(s, caller, call);
            case Method::delitem: {
                call.need(1);
                erase(found(items[0]));
                return answer(s, caller, call);
            }
            case Method::contains:
                call.need(1);
                return answer(s, caller, call, index_.contains(items[0]) ? 1 : 0);
            case Method::len:
                call.need(0);
                return answer(s, caller, call, static_cast<std::int64_t>(order_.size()));
            case Method::keys:
            case Method::values:
            case Method::items: {
                call.need(0);
                std::string batch;
                std::size_t n = 0;
                for (const auto& [key, value] : order_) {
                    if (call.method != Method::values) {
                        append_item(batch, key);
                        ++n;
                    }
                    if (call.method != Method::keys) {
                        append_item(batch, value);
                        ++n;
                    }
                }
                return answer(s, caller, call, static_cast<std::int64_t>(order_.size()), std::move(batch), n);
            }
            case Method::update:
                if (items.size() % 2 != 0) refuse(Status::protocol_error, "manager_call: update takes pairs");
                for (std::size_t i = 0; i < items.size(); i += 2) set(items[i], items[i + 1]);
                return answer(s, caller, call);
            case Method::pop: {
                call.need(1);
                auto it = index_.find(items[0]);
                if (it == index_.end()) {
                    if (call.int_arg(0) != 0) return answer(s, caller, call, 0);  // the caller has a default
                    missing(items[0]);
                }
                const std::string value = std::move(it->second->second);
                erase(it);
                return answer_item(s, caller, call, value, 1);
            }
            case Method::popitem: {
                call.need(0);
                if (order_.empty()) fail(Outcome::key_error, "popitem(): dictionary is empty");
                std::string batch;
                append_item(batch, order_.back().first);
                append_item(batch, order_.back().second);
                erase(index_.find(order_.back().first));
                return answer(s, caller, call, 0, std::move(batch), 2);
            }
            case Method::setdefault: {
                call.need(2);
                auto it = index_.find(items[0]);
                if (it != index_.end()) return answer_item(s, caller, call, it->second->second);
                set(items[0], items[1]);
                return answer_item(s, caller, call, items[1]);
            }
            case Method::clear:
                call.need(0);
                empty();
                return answer(s, caller, call);
            case Method::get_many: {
                std::string batch;
                std::int64_t hits = 0;
                for (std::string_view key : items) {
                    auto it = index_.find(key);
                    append_item(batch, it == index_.end() ? std::string_view() : std::string_view(it->second->second));
                    hits += it == index_.end() ? 0 : 1;
                }
                return answer(s, caller, call, hits, std::move(batch), items.size());
            }
            case Method::increment: {
                call.need(2);
                auto it = index_.find(items[0]);
                std::string sum = add(it == index_.end() ? std::string_view(kZero) : it->second->second, items[1]);
                if (it == index_.end()) {
                    set(items[0], sum);
                } else {
                    it->second->second = sum;
                }
                return answer_item(s, caller, call, sum);
            }
            case Method::compare_and_set: {
                call.need(3);
                auto it = index_.find(items[0]);
                const bool matches =
                    items[1].empty() ? it == index_.end() : it != index_.end() && it->second->second == items[1];
                if (matches) set(items[0], items[2]);
                return answer(s, caller, call, matches ? 1 : 0);
            }
            default:
                not_mine(call, is_namespace() ? "a Namespace" : "a dict");
        }
    }

private:
    using Order = std::list<std::pair<std::string, std::string>>;
    using Index = std::unordered_map<std::string_view, Order::iterator>;  // views of the keys in order_

    bool is_namespace() const { return kind() == Kind::manager_namespace; }

    void describe_contents(StatusFields& out) const override {
        out.emplace_back("entries", static_cast<std::int64_t>(order_.size()));
    }

    [[noreturn]] void missing(std::string_view key) const {
        if (is_namespace()) fail(Outcome::attribute_error, "'Namespace' object has no attribute " + show(key));
        fail(Outcome::key_error, show(key));
    }

    Index::iterator found(std::string_view key) {
        auto it = index_.find(key);
        if (it == index_.end()) missing(key);
        return it;
    }

    void set(std::string_view key, std::string_view value) {
        auto it = index_.find(key);
        if (it != index_.end()) {
            it->second->second.assign(value);
            return;
        }
        order_.emplace_back(std::string(key), std::string(value));
        auto last = std::prev(order_.end());
        index_.emplace(std::string_view(last->first), last);
    }

    void erase(Index::iterator it) {
        const Order::iterator entry = it->second;
        index_.erase(it);
        order_.erase(entry);
    }

    Order order_;  // insertion order, as Python's dict
    Index index_;
};

// ---- list -----------------------------------------------------------------------------------------

class ListObject final : public ManagedObject {
public:
    using ManagedObject::ManagedObject;

    void empty() override { std::vector<std::string>().swap(items_); }

protected:
    void serve(Services& s, const Caller& caller, const Call& call) override {
        const auto& items = call.items;
        switch (call.method) {
            case Method::len:
                call.need(0);
                return answer(s, caller, call, size());
            case Method::list_getitem:
                call.need(0);
                return answer_item(s, caller, call, items_[at(call.int_arg(0), "list index out of range")]);
            case Method::list_setitem:
                call.need(1);
                items_[at(call.int_arg(0), "list assignment index out of range")].assign(items[0]);
                return answer(s, caller, call);
            case Method::list_delitem:
                call.need(0);
                items_.erase(items_.begin() + at(call.int_arg(0), "list assignment index out of range"));
                return answer(s, caller, call);
            case Method::append:
                call.need(1);
                items_.emplace_back(items[0]);
                return answer(s, caller, call);
            case Method::extend:
                items_.insert(items_.end(), items.begin(), items.end());
                return answer(s, caller, call);
            case Method::insert: {
                call.need(1);
                std::int64_t i = call.int_arg(0);
                if (i < 0) i = std::max<std::int64_t>(0, i + size());
                i = std::min(i, size());
                items_.emplace(items_.begin() + i, items[0]);
                return answer(s, caller, call);
            }
            case Method::index: {
                call.need(1);
                const auto [from, to] = bounds(call.int_arg(0), call.int_arg(1));
                for (std::int64_t i = from; i < to; ++i)
                    if (items_[i] == items[0]) return answer(s, caller, call, i);
                fail(Outcome::value_error, show(items[0]) + " is not in list");
            }
            case Method::contains:
                call.need(1);
                return answer(s, caller, call, std::find(items_.begin(), items_.end(), items[0]) != items_.end());
            case Method::count:
                call.need(1);
                return answer(s, caller, call, std::count(items_.begin(), items_.end(), items[0]));
            case Method::list_pop: {
                call.need(0);
                if (items_.empty()) fail(Outcome::index_error, "pop from empty list");
                const auto i = at(call.int_arg(0), "pop index out of range");
                std::string value = std::move(items_[i]);
                items_.erase(items_.begin() + i);
                return answer_item(s, caller, call, value);
            }
            case Method::remove: {
                call.need(1);
                auto it = std::find(items_.begin(), items_.end(), items[0]);
                if (it == items_.end()) fail(Outcome::value_error, "list.remove(x): x not in list");
                items_.erase(it);
                return answer(s, caller, call);
            }
            case Method::sort:
                call.need(0);
                sort(call.int_arg(0) != 0);
                return answer(s, caller, call);
            case Method::reverse:
                call.need(0);
                std::reverse(items_.begin(), items_.end());
                return answer(s, caller, call);
            case Method::values:  // the whole list
            case Method::get_slice: {
                call.need(0);
                const auto [from, to] = call.method == Method::values ? std::pair<std::int64_t, std::int64_t>{0, size()}
                                                                      : bounds(call.int_arg(0), call.int_arg(1));
                std::string batch;
                for (std::int64_t i = from; i < to; ++i) append_item(batch, items_[i]);
                return answer(s, caller, call, to - from, std::move(batch), static_cast<std::size_t>(to - from));
            }
            case Method::set_slice: {
                const auto [from, to] = bounds(call.int_arg(0), call.int_arg(1));
                items_.erase(items_.begin() + from, items_.begin() + to);
                items_.insert(items_.begin() + from, items.begin(), items.end());
                return answer(s, caller, call);
            }
            case Method::del_slice: {
                call.need(0);
                const auto [from, to] = bounds(call.int_arg(0), call.int_arg(1));
                items_.erase(items_.begin() + from, items_.begin() + to);
                return answer(s, caller, call);
            }
            case Method::clear:
                call.need(0);
                items_.clear();
                return answer(s, caller, call);
            case Method::list_increment: {
                call.need(1);
                std::string& slot = items_[at(call.int_arg(0), "list index out of range")];
                slot = add(slot, items[0]);
                return answer_item(s, caller, call, slot);
            }
            default:
                not_mine(call, "a list");
        }
    }

private:
    std::int64_t size() const { return static_cast<std::int64_t>(items_.size()); }
    void describe_contents(StatusFields& out) const override { out.emplace_back("entries", size()); }

    // Python's index: negative counts from the end; IndexError(`what`) outside.
    std::int64_t at(std::int64_t i, const char* what) const {
        if (i < 0 && i != INT64_MIN) i += size();
        if (i < 0 || i >= size()) fail(Outcome::index_error, what);
        return i;
    }

    // Python's slice bounds (step 1): kNoBound is the start or the end, negative counts from the
    // end, and both are clamped to the list.
    std::pair<std::int64_t, std::int64_t> bounds(std::int64_t start, std::int64_t stop) const {
        const auto clamp = [&](std::int64_t i, std::int64_t none) {
            if (i == managed::kNoBound) return none;
            if (i < 0) i = std::max<std::int64_t>(0, i + size());
            return std::min(i, size());
        };
        const std::int64_t from = clamp(start, 0);
        return {from, std::max(from, clamp(stop, size()))};
    }

    // A stable sort; values that do not order raise TypeError and leave the list as it was.
    void sort(bool reverse) {
        std::vector<transport::Decoded> decoded;
        decoded.reserve(items_.size());
        for (const std::string& item : items_) decoded.push_back(transport::decode(item.data(), item.size()));
        std::vector<std::size_t> positions(items_.size());
        for (std::size_t i = 0; i < positions.size(); ++i) positions[i] = i;
        std::stable_sort(positions.begin(), positions.end(), [&](std::size_t a, std::size_t b) {
            const int c = order(decoded[a].get(), decoded[b].get());
            return reverse ? c > 0 : c < 0;
        });
        std::vector<std::string> sorted;
        sorted.reserve(items_.size());
        for (std::size_t i : positions) sorted.push_back(std::move(items_[i]));
        items_ = std::move(sorted);
    }

    std::vector<std::string> items_;
};

// ---- Value -----------------------------------------------------------------------------------------

class ValueObject final : public ManagedObject {
public:
    using ManagedObject::ManagedObject;

    void empty() override { value_ = kNil; }

protected:
    void serve(Services& s, const Caller& caller, const Call& call) override {
        const auto& items = call.items;
        switch (call.method) {
            case Method::value_get:
                call.need(0);
                return answer_item(s, caller, call, value_);
            case Method::value_set:
                call.need(1);
                value_.assign(items[0]);
                return answer(s, caller, call);
            case Method::value_increment:
                call.need(1);
                value_ = add(value_, items[0]);
                return answer_item(s, caller, call, value_);
            case Method::value_compare_and_set: {
                call.need(2);
                const bool matches = value_ == items[0];
                if (matches) value_.assign(items[1]);
                return answer(s, caller, call, matches ? 1 : 0);
            }
            default:
                not_mine(call, "a Value");
        }
    }

private:
    static inline const std::string kNil{"\xc0"};
    std::string value_ = kNil;
};

// ---- the manager ------------------------------------------------------------------------------------

// A name's item: a msgpack string.
std::string name_of(std::string_view item) {
    transport::Decoded decoded = transport::decode(item.data(), item.size());
    const msgpack::object& o = decoded.get();
    if (o.type != msgpack::type::STR || o.via.str.size == 0)
        refuse(Status::protocol_error, "manager_call: a name must be a non-empty string");
    return std::string(o.via.str.ptr, o.via.str.size);
}

// name_bind's ids item: a msgpack array of object ids, at least one.
std::vector<std::uint64_t> ids_of(std::string_view item) {
    transport::Decoded decoded = transport::decode(item.data(), item.size());
    const msgpack::object& o = decoded.get();
    if (o.type != msgpack::type::ARRAY || o.via.array.size == 0 || o.via.array.size > 16)
        refuse(Status::protocol_error, "manager_call: a named object's ids must be an array of 1 to 16 ids");
    std::vector<std::uint64_t> ids;
    for (std::uint32_t i = 0; i < o.via.array.size; ++i) {
        const msgpack::object& id = o.via.array.ptr[i];
        if (id.type != msgpack::type::POSITIVE_INTEGER || id.via.u64 == 0)
            refuse(Status::protocol_error, "manager_call: an object id must be a positive integer");
        ids.push_back(id.via.u64);
    }
    return ids;
}

// A manager (CREATE [manager, 0]), or a view of the one its broker serves, which a program that
// connected to that address holds (CREATE [manager, 1]): both make objects for the same state and
// reach the same names, but only the manager itself shuts it down.
class ManagerObject final : public Object {
public:
    ManagerObject(std::uint64_t id, Kind kind, const Services& s, std::shared_ptr<ManagerState> state, bool view)
        : Object(id, kind), services_(&s), state_(std::move(state)), view_(view) {
        std::lock_guard lock(managers().mutex);
        managers().by_id[{services_, id}] = state_;
    }
    ~ManagerObject() override {
        std::lock_guard lock(managers().mutex);
        managers().by_id.erase({services_, id()});
        auto served = managers().served.find(services_);
        if (!view_ && served != managers().served.end() && served->second == state_) managers().served.erase(served);
    }

    static std::unique_ptr<Object> make(Services& s, std::uint64_t id, const CreateArgs& args) {
        if (args.value == 0)
            return std::make_unique<ManagerObject>(id, args.kind, s, std::make_shared<ManagerState>(), false);
        if (args.value != 1) refuse(Status::protocol_error, "create: a manager's argument is 0 or 1");
        std::shared_ptr<ManagerState> served;
        {
            std::lock_guard lock(managers().mutex);
            auto it = managers().served.find(&s);
            if (it != managers().served.end()) served = it->second;
        }
        if (served == nullptr || served->shut_down)
            refuse(Status::value_error,
                   "this broker serves no Manager (it was not started on an address, or has shut down)");
        return std::make_unique<ManagerObject>(id, args.kind, s, std::move(served), true);
    }

    // MANAGER_CALL: attach_owner, shutdown, publish, and the names.
    void call(Services& s, const Caller& caller, const Request& req) {
        const Call call = read_call(req);
        try {
            serve(s, caller, call);
        } catch (const Failed& f) {
            answer_failed(s, caller, req, f);
        }
    }

    void on_timeout(Services&, WaiterId) override {}
    void drop_waiter(Services&, WaiterId) override {}

    // For zmp-status: the objects it made that are alive, whether it has shut down, its owner.
    void describe(Services& /*s*/, StatusFields& out) const override {
        out.emplace_back("objects", static_cast<std::int64_t>(state_->members.size()));
        out.emplace_back("shut_down", state_->shut_down ? 1 : 0);
        out.emplace_back("owner_pid", owner_ != nullptr ? static_cast<std::int64_t>(client_pid(*owner_)) : 0);
    }

    // The process that made the manager died: it shuts down, as Python's server does with its owner.
    void on_client_death(Services& s, Client& client) override {
        if (&client == owner_) {
            owner_ = nullptr;
            shut_down(s);
        }
    }

    void on_destroy(Services& s) override {
        if (!view_) shut_down(s);
        Object::on_destroy(s);
    }

private:
    void serve(Services& s, const Caller& caller, const Call& call) {
        const auto& items = call.items;
        switch (call.method) {
            case Method::attach_owner:
                call.need(0);
                if (!view_) owner_ = caller.client;
                return answer(s, caller, call);
            case Method::shutdown:
                call.need(0);
                if (!view_) shut_down(s);  // a program that connected cannot stop the server's manager
                return answer(s, caller, call);
            default:
                break;
        }
        if (state_->shut_down) fail(Outcome::shut_down, "the Manager has shut down");
        switch (call.method) {
            case Method::publish: {
                call.need(0);
                if (view_) refuse(Status::protocol_error, "manager_call: a connected manager cannot publish");
                std::lock_guard lock(managers().mutex);
                auto& served = managers().served[services_];
                if (served != nullptr && served != state_ && !served->shut_down)
                    fail(Outcome::value_error, "this broker serves another Manager already");
                served = state_;
                return answer(s, caller, call);
            }
            case Method::name_get: {
                call.need(1);
                auto it = state_->names.find(name_of(items[0]));
                if (it == state_->names.end()) fail(Outcome::key_error, show(items[0]));
                return give(s, caller, call, it->second, 1);
            }
            case Method::name_bind: {
                call.need(3);
                std::string name = name_of(items[0]);
                Named named{std::string(items[1]), ids_of(items[2])};
                auto it = state_->names.find(name);
                if (it != state_->names.end() && call.int_arg(0) == 0) return give(s, caller, call, it->second, 0);
                for (std::size_t i = 0; i < named.ids.size(); ++i) {
                    if (s.keep(named.ids[i])) continue;
                    for (std::size_t j = 0; j < i; ++j) s.release(named.ids[j]);
                    fail(Outcome::value_error, "the object published as " + show(items[0]) + " no longer exists");
                }
                if (it != state_->names.end()) {
                    for (std::uint64_t id : it->second.ids) s.release(id);
                    it->second = std::move(named);
                } else {
                    state_->names.emplace(std::move(name), std::move(named));
                }
                return answer(s, caller, call, 1);
            }
            case Method::name_remove: {
                call.need(1);
                auto it = state_->names.find(name_of(items[0]));
                if (it == state_->names.end()) fail(Outcome::key_error, show(items[0]));
                for (std::uint64_t id : it->second.ids) s.release(id);
                state_->names.erase(it);
                return answer(s, caller, call);
            }
            case Method::name_list: {
                call.need(0);
                std::string batch;
                for (const auto& [name, named] : state_->names) {
                    msgpack::sbuffer packed;
                    msgpack::pack(packed, name);
                    append_item(batch, std::string_view(packed.data(), packed.size()));
                }
                return answer(s, caller, call, 0, std::move(batch), state_->names.size());
            }
            default:
                refuse(Status::protocol_error, "manager_call: this method does not apply to a Manager");
        }
    }

    // Answers with a named object's wire; the caller gets a reference to each of its objects.
    static void give(Services& s, const Caller& caller, const Call& call, const Named& named, std::int64_t result) {
        for (std::uint64_t id : named.ids) s.give_reference(caller, id);
        answer_item(s, caller, call, named.wire, result);
    }

    void shut_down(Services& s) {
        if (state_->shut_down) return;
        state_->shut_down = true;
        for (ManagedObject* member : state_->members) member->empty();
        auto names = std::move(state_->names);
        state_->names.clear();
        for (const auto& [name, named] : names)
            for (std::uint64_t id : named.ids) s.release(id);
    }

    const Services* services_;
    std::shared_ptr<ManagerState> state_;
    const bool view_;
    Client* owner_ = nullptr;
};

}  // namespace

const KindEntry manager_kind{
    {Kind::manager},
    false,
    &ManagerObject::make,
    {{Op::manager_call, op<&ManagerObject::call>()}},
};

const KindEntry managed_mapping_kind{
    {Kind::manager_dict, Kind::manager_namespace},
    false,
    &make_managed<MappingObject>,
    {{Op::manager_call, op<&MappingObject::call>()}},
};

const KindEntry managed_list_kind{
    {Kind::manager_list},
    false,
    &make_managed<ListObject>,
    {{Op::manager_call, op<&ListObject::call>()}},
};

const KindEntry managed_value_kind{
    {Kind::manager_value},
    false,
    &make_managed<ValueObject>,
    {{Op::manager_call, op<&ValueObject::call>()}},
};

}  // namespace zmp::detail::broker
