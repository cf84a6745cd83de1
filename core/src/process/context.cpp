#include "zmp/context.hpp"

#include <unistd.h>

#include <cstdlib>

#include "process/bootstrap.hpp"
#include "process/default_start_method.hpp"
#include "process/forkserver.hpp"
#include "runtime/hooks.hpp"
#include "runtime/run.hpp"
#include "runtime/startup.hpp"

namespace zmp {
namespace {

int handed_fd(const char* variable) {
    const char* value = std::getenv(variable);
    if (value == nullptr) return -1;
    const int fd = std::atoi(value);
    ::unsetenv(variable);  // this process's own children must not see it
    return fd;
}

}  // namespace

void init(int argc, char** argv) {
    detail::init_called();
    const int spawn_fd = handed_fd("ZMP_SPAWN_FD");
    const int server_fd = handed_fd("ZMP_FORKSERVER_FD");
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
    detail::this_run().set_argv(std::move(args));
    // Services a flag asks for (the pool's --zmp-worker) take the process over here.
    detail::run_init_hooks(argc, argv);
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
    detail::set_default_start_method(method, force);
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
