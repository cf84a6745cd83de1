#pragma once
// The forkserver start method. The server is a fresh run of this binary (so it has no thread and
// no ZeroMQ context, whatever its starter has), single-threaded, listening on a Unix socket in
// the run directory. A start request is one connection: the bootstrap goes in; the child's pid
// and a pidfd on it come back; the child's exit code comes back when it ends (the connection is
// the child's sentinel). Processes of the run share their parent's server (the address is a
// runtime service); the server ends with the process that started it, and a process whose server
// is gone starts a new one on its next start().

#include <sys/types.h>

#include <memory>
#include <optional>

#include "process/process_state.hpp"

namespace zmp::detail {

/// Starts `process` through the fork server, starting or restarting the server as needed.
std::unique_ptr<Popen> forkserver_start(const ProcessState& st, const Process& process);

/// The pid of the fork server this process started, if it started one (for tests and tools).
std::optional<pid_t> forkserver_pid();

/// The server's main loop, entered by zmp::init() in a process started as a fork server.
[[noreturn]] void forkserver_main(int handshake_fd);

}  // namespace zmp::detail
