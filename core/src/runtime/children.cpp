#include "runtime/children.hpp"

#include <mutex>

#include "base/log.hpp"
#include "runtime/hooks.hpp"
#include "runtime/process_global.hpp"
#include "zmp/errors.hpp"

namespace zmp::detail {
namespace {

struct Children {
    std::mutex mutex;
    std::vector<std::shared_ptr<TrackedChild>> list;

    Children() {
        add_exit_hook(finish_children, ExitStage::children);
        arm_exit_hooks();
    }

    void after_fork_child() {
        // The parent's children, leaked: destroying them here would close descriptors the
        // parent's handles own.
        if (!list.empty()) {
            new std::vector<std::shared_ptr<TrackedChild>>(std::move(list));
            list.clear();
        }
    }
};

// Children are finished from atexit, after static destructors may have run: never destroyed.
Children& registry() { return process_global<Children>(); }

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
    for (const auto& child : children()) {
        if (child->is_daemon() && child->is_alive()) {
            if (log_enabled(LogLevel::info))
                log_record(LogLevel::info, "at exit: terminating daemonic child " + child->describe());
            child->terminate();
        }
    }
    for (const auto& child : children()) {
        if (log_enabled(LogLevel::debug)) log_record(LogLevel::debug, "at exit: joining child " + child->describe());
        try {
            child->join();
        } catch (const ProcessError&) {
        }
    }
}

}  // namespace zmp::detail
