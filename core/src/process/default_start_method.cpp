#include "process/default_start_method.hpp"

#include <mutex>

#include "runtime/process_global.hpp"

namespace zmp::detail {
namespace {

struct DefaultMethod {
    std::mutex mutex;
    std::optional<StartMethod> method;
    bool fixed = false;
};

// Its mutex is held across fork(): a forked child sets the default at once.
DefaultMethod& default_method() { return process_global<DefaultMethod, ForkLayer::service>(); }

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
