#include "pool/worker_events.hpp"

#include <string.h>

#include "base/log.hpp"

namespace zmp::detail {
namespace {

std::string named(const std::string& name, pid_t pid) { return name + " (pid " + std::to_string(pid) + ")"; }

}  // namespace

std::string describe_exit(int exitcode) {
    if (exitcode >= 0) return "exited with code " + std::to_string(exitcode);
    const char* abbrev = ::sigabbrev_np(-exitcode);
    return "killed by signal " + std::to_string(-exitcode) + (abbrev ? std::string(" (SIG") + abbrev + ")" : "");
}

void log_worker_started(const std::string& name, pid_t pid) {
    if (log_enabled(LogLevel::info)) log_record(LogLevel::info, "pool worker " + named(name, pid) + " started");
}

void log_worker_ended(const std::string& name, pid_t pid, int exitcode, bool retired, bool lost_task) {
    if (retired) {
        if (log_enabled(LogLevel::debug))
            log_record(LogLevel::debug, "pool worker " + named(name, pid) + " retired: " + describe_exit(exitcode));
        return;
    }
    if (!log_enabled(LogLevel::info)) return;
    log_record(LogLevel::info, "pool worker " + named(name, pid) + " died: " + describe_exit(exitcode) +
                                   (lost_task ? ", running a task" : ", idle"));
}

void log_worker_replaced(const std::string& old_name, const std::string& new_name, pid_t new_pid) {
    if (log_enabled(LogLevel::info))
        log_record(LogLevel::info, "pool worker " + old_name + " replaced by " + named(new_name, new_pid));
}

void log_task_retried(std::uint64_t task, int attempt, int max_retries, const std::string& worker) {
    if (!log_enabled(LogLevel::warning)) return;
    log_record(LogLevel::warning, "task " + std::to_string(task) + " retried (attempt " + std::to_string(attempt) +
                                      " of " + std::to_string(1 + max_retries) + "): its worker " + worker + " died");
}

}  // namespace zmp::detail
