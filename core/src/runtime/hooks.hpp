#pragma once
// Start and exit hooks: what the services built on the runtime (the broker, queues) need done
// before each child starts and when a process exits. Registering never makes any other part of the
// runtime, so that a module may register from a static initialiser (a spawned child must not use
// zmp before zmp::init()).
//
// Exit hooks run in stages: first the children (terminated or joined: they may still use the
// services), then the services (in the reverse order of registration), then the run directory.
// They run once: from exit_child() in a child, and from atexit in any process that exits through
// exit() (the root returning from main), armed when the runtime is first used (zmp::init() in the
// root). Forked children inherit the registrations.
//
//     add_exit_hook(stop_feeder);                              // a service stops
//     add_exit_hook(remove_dir, ExitStage::run_directory);     // after every service

#include <functional>

namespace zmp::detail {

enum class ExitStage : int {
    children = 0,       // finish this process's children
    services = 1,       // services stop; the default
    run_directory = 2,  // what the run left on disk goes
};

/// Runs `hook` in this process (and its forked children) just before every child starts, in the
/// parent: services a child needs (the broker) start there.
void add_start_hook(std::function<void()> hook);
void run_start_hooks();

/// Runs `hook` in every child this program starts, whatever its start method, once it has become
/// itself (its run, identity and services are in place) and before its target runs: per-child
/// services start there (capture of its output). Register from a static initialiser so that a
/// spawned child, a fresh copy of the binary, has the hook too.
void add_child_hook(std::function<void()> hook);
void run_child_hooks();

/// Runs `hook` from zmp::init() in a root process (never in a child started by spawn or the fork
/// server: init runs their target first), with the program's arguments, once the run knows its
/// argv. A service that a command-line flag asks for takes the process over there and does not
/// return (the pool's `--zmp-worker`: the program serves a pool instead of running its main).
/// Register from a static initialiser; the hooks run in the order of registration.
void add_init_hook(std::function<void(int argc, char** argv)> hook);
void run_init_hooks(int argc, char** argv);

/// Runs `hook` when this process exits, in `stage`; within a stage, in the reverse order of
/// registration. An exception from a hook is swallowed: the others still run.
void add_exit_hook(std::function<void()> hook, ExitStage stage = ExitStage::services);
/// Runs the exit hooks registered so far, each once (hooks added meanwhile run too).
void run_exit_hooks();
/// Has exit() run the exit hooks (atexit, once per process). The runtime's pieces call it when they
/// are first made, so that the statics a program makes later are destroyed after the hooks have run.
void arm_exit_hooks();

}  // namespace zmp::detail
