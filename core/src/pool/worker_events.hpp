#pragma once
// What the pool's dispatcher tells the run's log about its workers (base/log.hpp): a worker
// started, ended (retired, or died: with its exit code or signal), replaced, and a task retried
// after its worker died. A worker's life is info (a task lost with it raises WorkerLost in its
// caller already); a retry is a warning, since the caller sees only the result. Each call builds
// its message only when the record would be sent.

#include <sys/types.h>

#include <cstdint>
#include <string>

namespace zmp::detail {

/// "exited with code 3", "killed by signal 9 (SIGKILL)": a process's exit code as Python's
/// negative numbers mean it.
std::string describe_exit(int exitcode);

void log_worker_started(const std::string& name, pid_t pid);
/// `retired`: the dispatcher ended it (maxtasksperchild, close); `lost_task`: it died running one.
void log_worker_ended(const std::string& name, pid_t pid, int exitcode, bool retired, bool lost_task);
void log_worker_replaced(const std::string& old_name, const std::string& new_name, pid_t new_pid);
/// Task `task` goes to another worker: attempt `attempt` of 1 + `max_retries`.
void log_task_retried(std::uint64_t task, int attempt, int max_retries, const std::string& worker);

}  // namespace zmp::detail
