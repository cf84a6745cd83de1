#include "process/default_start_method.hpp"

#include <mutex>

#include "base/fork.hpp"

namespace zmp::detail {
namespace {

struct DefaultMethod {
    std::mutex mutex;
    std::optional<StartMethod> method;
    bool fixed = false;
};

// Never destroyed. Its mutex is held across fork(): a forked child sets the default at once. The
// fork handlers use the pointer, not default_method(), whose first call may still be under way.
DefaultMethod* the_default = nullptr;

void lock_default() { the_default->mutex.lock(); }
void unlock_default() { the_default->mutex.unlock(); }

DefaultMethod& default_method() {
    static DefaultMethod* made = [] {
        the_default = new DefaultMethod();
        on_fork(ForkLayer::service, {lock_default, unlock_default, unlock_default});
        return the_default;
    }();
    return *made;
}

}  // namespace

StartMethod use_default_start_method() {
    DefaultMethod& d = default_method();
    std::lock_guard lock(d.mutex);
    if (!d.method) d.method = StartMethod::fork;
    d.fixed = true;
    return *d.method;
}

std::optional<StartMethod> peek_default_start_method() {
    DefaultMethod& d = default_method();
    std::lock_guard lock(d.mutex);
    return d.method;
}

void adopt_start_method(StartMethod method) {
    DefaultMethod& d = default_method();
    std::lock_guard lock(d.mutex);
    d.method = method;
    d.fixed = true;
}

void set_default_start_method(std::optional<StartMethod> method, bool force) {
    DefaultMethod& d = default_method();
    std::lock_guard lock(d.mutex);
    if (d.fixed && !force) throw RuntimeError("context has already been set");
    if (!method) {
        if (!force) throw ValueError("set_start_method() needs a method unless force is true");
        d.method.reset();
        d.fixed = false;
        return;
    }
    d.method = method;
    d.fixed = true;
}

}  // namespace zmp::detail
