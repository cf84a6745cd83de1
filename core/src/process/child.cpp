#include "process/child.hpp"

#include <pthread.h>

#include <cstdint>
#include <cstdio>
#include <cxxabi.h>
#include <iostream>
#include <typeinfo>

#include "base/fork.hpp"
#include "process/default_start_method.hpp"
#include "runtime/exit.hpp"
#include "runtime/hooks.hpp"
#include "zmp/transport/codec.hpp"

namespace zmp::detail {
namespace {

// The thread running the target, in the process (fork generation) that runs it: a grandchild
// forked from that thread is not running a target until its own starts.
struct TargetThread {
    bool running = false;
    pthread_t thread{};
    std::uint64_t generation = 0;
};
TargetThread target_thread;

// Runs the target the way Python's _bootstrap does and returns the exit code.
int run_target(Process& process) {
    target_thread = {true, ::pthread_self(), fork_generation()};
    try {
        process.run();
        return 0;
    } catch (const SystemExit& e) {
        return e.code;
    } catch (const std::exception& e) {
        std::cout.flush();
        std::fflush(stdout);
        std::fprintf(stderr, "Process %s:\n%s: %s\n", this_process().name().c_str(),
                     transport::type_name(typeid(e)).c_str(), e.what());
        return 1;
    } catch (...) {
        const std::type_info* type = abi::__cxa_current_exception_type();
        std::fprintf(stderr, "Process %s:\n%s\n", this_process().name().c_str(),
                     type ? transport::type_name(*type).c_str() : "unknown exception");
        return 1;
    }
}

}  // namespace

bool on_target_thread() {
    return this_process().is_child() && target_thread.running && target_thread.generation == fork_generation() &&
           ::pthread_equal(target_thread.thread, ::pthread_self());
}

void become_child(const ChildIdentity& who, StartMethod method) {
    this_process().become_child(who);
    adopt_start_method(method);
}

[[noreturn]] void run_child(Process& process) {
    run_child_hooks();
    exit_child(run_target(process));
}

}  // namespace zmp::detail
