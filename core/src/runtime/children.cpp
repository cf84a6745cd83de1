#include "runtime/children.hpp"

#include <mutex>

#include "base/fork.hpp"
#include "runtime/hooks.hpp"
#include "zmp/errors.hpp"

namespace zmp::detail {
namespace {

struct Children {
    std::mutex mutex;
    std::vector<std::shared_ptr<TrackedChild>> list;
};

// Never destroyed: children are finished from atexit, after static destructors may have run. The
// fork handlers use the pointer, not registry(), whose first call may still be under way.
Children* the_children = nullptr;

void lock_children() { the_children->mutex.lock(); }
void unlock_children() { the_children->mutex.unlock(); }
void forget_parents_children() {
    the_children->mutex.unlock();
    // The parent's children, leaked: destroying them here would close descriptors the parent's
    // handles own.
    if (!the_children->list.empty()) {
        new std::vector<std::shared_ptr<TrackedChild>>(std::move(the_children->list));
        the_children->list.clear();
    }
}

Children& registry() {
    static Children* made = [] {
        the_children = new Children();
        on_fork(ForkLayer::runtime, {lock_children, unlock_children, forget_parents_children});
        add_exit_hook(finish_children, ExitStage::children);
        return the_children;
    }();
    return *made;
}

}  // namespace

void add_child(std::shared_ptr<TrackedChild> child) {
    Children& c = registry();
    std::lock_guard lock(c.mutex);
    c.list.push_back(std::move(child));
}

std::vector<std::shared_ptr<TrackedChild>> children() {
    Children& c = registry();
    std::lock_guard lock(c.mutex);
    return c.list;
}

void forget_child(const TrackedChild* child) {
    Children& c = registry();
    std::lock_guard lock(c.mutex);
    std::erase_if(c.list, [child](const auto& each) { return each.get() == child; });
}

void finish_children() {
    for (const auto& child : children())
        if (child->is_daemon() && child->is_alive()) child->terminate();
    for (const auto& child : children()) {
        try {
            child->join();
        } catch (const ProcessError&) {
        }
    }
}

}  // namespace zmp::detail
