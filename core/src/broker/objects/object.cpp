#include "broker/objects/object.hpp"

#include <algorithm>

#include "broker/arena.hpp"
#include "broker/fast_path.hpp"

namespace zmp::detail::broker {

void WaitQueue::pop_front() {
    ++head_;
    if (head_ == ids_.size()) {
        clear();
    } else if (head_ >= 32 && 2 * head_ >= ids_.size()) {
        // A queue that never empties (a contended lock) does not grow for ever.
        ids_.erase(ids_.begin(), ids_.begin() + static_cast<std::ptrdiff_t>(head_));
        head_ = 0;
    }
}

bool WaitQueue::erase(WaiterId id) {
    auto it = std::find(ids_.begin() + static_cast<std::ptrdiff_t>(head_), ids_.end(), id);
    if (it == ids_.end()) return false;
    ids_.erase(it);
    if (head_ == ids_.size()) clear();
    return true;
}

bool WaitQueue::contains(WaiterId id) const {
    return std::find(ids_.begin() + static_cast<std::ptrdiff_t>(head_), ids_.end(), id) != ids_.end();
}

std::vector<WaiterId> WaitQueue::take_all() {
    std::vector<WaiterId> all(ids_.begin() + static_cast<std::ptrdiff_t>(head_), ids_.end());
    clear();
    return all;
}

void refuse(Status status, std::string text) { throw Refused{status, std::move(text)}; }

std::int64_t arg(const Request& r, std::size_t i) {
    if (i >= r.nargs) refuse(Status::protocol_error, std::string(op_name(r.op)) + ": missing argument");
    return r.args[i];
}

Clock::time_point deadline_from(std::int64_t timeout_ns) {
    return decode_timeout(timeout_ns, Clock::now()).time_or_max();
}

void Object::place_in_arena(Services& s, SlotStart start) {
    const std::uint32_t index = s.allocate_slot();
    init_slot(s.arena()->slot(index), id_, kind_, start.value, start.timeout_ns);
    slot_ = index;
}

void Object::on_destroy(Services& s) {
    if (slot_ >= 0) s.release_slot(static_cast<std::uint32_t>(slot_));
    slot_ = -1;
}

}  // namespace zmp::detail::broker
