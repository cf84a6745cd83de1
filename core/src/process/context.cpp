#include "zmp/context.hpp"

#include <cstdlib>
#include <mutex>

#include "process/bootstrap.hpp"
#include "process/context_state.hpp"
#include "process/forkserver.hpp"
#include "runtime/runtime.hpp"

namespace zmp {
namespace detail {
namespace {

// The default start method, as Python's DefaultContext keeps it: unset until chosen, and fixed
// (no longer settable without force) once anything has used it.
struct DefaultMethod {
    std::mutex mutex;
    std::optional<StartMethod> method;
    bool fixed = false;
};

DefaultMethod& default_method() {
    static DefaultMethod* d = new DefaultMethod();
    return *d;
}

int handed_fd(const char* variable) {
    const char* value = std::getenv(variable);
    if (value == nullptr) return -1;
    const int fd = std::atoi(value);
    ::unsetenv(variable);  // this process's own children must not see it
    return fd;
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

}  // namespace detail

void init(int argc, char** argv) {
    detail::init_called();
    const int spawn_fd = detail::handed_fd("ZMP_SPAWN_FD");
    const int server_fd = detail::handed_fd("ZMP_FORKSERVER_FD");
    if (server_fd >= 0) detail::forkserver_main(server_fd);  // must not touch the runtime first
    std::vector<std::string> args(argv, argv + argc);
    if (spawn_fd >= 0) {
        transport::FdChannel channel(spawn_fd);
        transport::ChannelMessage message;
        bool got = false;
        try {
            got = channel.recv(message);
        } catch (const ProcessError&) {
        }
        if (!got) ::_exit(70);  // the parent is gone before it told us anything
        detail::run_bootstrapped_child(std::move(message), &channel);
    }
    detail::Runtime::instance().set_argv(std::move(args));
}

std::string_view to_string(StartMethod method) {
    switch (method) {
        case StartMethod::fork:
            return "fork";
        case StartMethod::spawn:
            return "spawn";
        case StartMethod::forkserver:
            return "forkserver";
    }
    return "unknown";
}

StartMethod parse_start_method(std::string_view name) {
    for (StartMethod m : get_all_start_methods())
        if (to_string(m) == name) return m;
    throw ValueError("cannot find context for '" + std::string(name) + "'");
}

Context get_context() { return Context(detail::use_default_start_method()); }
Context get_context(StartMethod method) { return Context(method); }
Context get_context(std::string_view method) { return Context(parse_start_method(method)); }

void set_start_method(std::optional<StartMethod> method, bool force) {
    detail::DefaultMethod& d = detail::default_method();
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

void set_start_method(std::string_view method, bool force) { set_start_method(parse_start_method(method), force); }

std::optional<StartMethod> get_start_method(bool allow_none) {
    if (allow_none) return detail::peek_default_start_method();
    return detail::use_default_start_method();
}

std::vector<StartMethod> get_all_start_methods() {
    return {StartMethod::fork, StartMethod::spawn, StartMethod::forkserver};
}

}  // namespace zmp
