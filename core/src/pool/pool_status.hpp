#pragma once
// A pool's side of zmp-status (pool/status_server.hpp serves it): the status thread asks, the
// dispatcher answers between two turns of its loop with a packed msgpack map:
//
//   {"creator": pid, "method": "fork", "processes": N, "max_retries": n, "state": "running" |
//    "closed", "queued": chunks waiting for a worker, "jobs": jobs not finished, "restarts":
//    workers started in place of ones that died,
//    "workers": [{"name", "pid", "state": "busy" | "idle" | "retiring", "tasks_done", "failures",
//                 "in_flight": chunks it holds, "running": the task id it runs (0: none)}...],
//    "ended": [{"name", "pid", "exit": "killed by signal 9 (SIGKILL)", "retired": bool,
//               "replaced_by": name or ""}...]}   the latest kMaxEndedWorkers
//
// Asking costs the dispatcher nothing until someone asks: one flag read under the lock it takes
// every turn anyway.

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <string>

namespace zmp::detail {

inline constexpr std::size_t kMaxEndedWorkers = 32;
/// How long the status thread waits for a dispatcher's answer.
inline constexpr std::chrono::seconds kPoolStatusWait{5};

struct PoolStatusBoard {
    // Under the pool's mutex.
    bool wanted = false;           // the status thread asked
    bool dispatcher_done = false;  // the dispatcher has returned: nobody answers
    std::uint64_t serial = 0;      // bumped at each answer
    std::string packed;            // the latest answer
    std::condition_variable answered;
    std::uint64_t registration = 0;  // with the status server; 0: none

    // Dispatcher thread only.
    struct Ended {
        std::string name;
        pid_t pid = 0;
        std::string exit;
        bool retired = false;
        std::string replaced_by;
    };
    std::deque<Ended> ended;
    std::uint64_t restarts = 0;

    void note_ended(std::string name, pid_t pid, std::string exit, bool retired) {
        ended.push_back(Ended{std::move(name), pid, std::move(exit), retired, {}});
        if (ended.size() > kMaxEndedWorkers) ended.pop_front();
    }
    void note_replaced(const std::string& by) {
        if (ended.empty()) return;
        ended.back().replaced_by = by;
        if (!ended.back().retired) ++restarts;
    }
};

}  // namespace zmp::detail
