#pragma once
// The start methods behind one interface. Process::start() prepares what every method needs (the
// run directory, the services children use, a pidfd on the parent), then hands the child to the
// Starter its StartMethod names:
//  - fork (fork_starter.cpp): the child is a copy of this process;
//  - spawn (spawn_starter.cpp): a fresh run of this binary, handed a bootstrap (bootstrap.hpp);
//  - forkserver (forkserver_starter.cpp): a child forked by the run's fork server, which is itself
//    a fresh run of this binary (forkserver.hpp).
// A new way of starting children is one more Starter; what runs in the child is process/child.hpp.

#include <memory>

#include "process/popen.hpp"
#include "process/process_state.hpp"
#include "zmp/process.hpp"

namespace zmp::detail {

class Starter {
public:
    virtual ~Starter() = default;
    /// Starts the child `process` describes (`state` is its state, locked by the caller) and
    /// returns how to watch it. ValueError if the process cannot be started this way (a target
    /// that cannot travel, zmp::init() missing); OSError if the system cannot make a process.
    virtual std::unique_ptr<Popen> start(const ProcessState& state, Process& process) = 0;
};

Starter& fork_starter();
Starter& spawn_starter();
Starter& forkserver_starter();

/// The Starter of `method`.
Starter& starter_for(StartMethod method);

}  // namespace zmp::detail
