#pragma once
// Tasks that both the pool tests and the joined worker they launch (helpers/pool_task_worker.cpp,
// another build) register by name: how tasks reach workers of other builds.
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>

#include "zmp/function.hpp"

namespace join_tasks {

inline long square(long x) { return x * x; }
// Slow enough that a map is still running when a test cuts or kills a worker.
inline long slow_square(long x) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    return x * x;
}
// Which worker ran it: its pid.
inline long worker_pid(long) { return static_cast<long>(::getpid()); }
// How many of these this process has run: a fresh process counts from 1 again.
inline long tasks_in_this_process(long) {
    static long count = 0;
    return ++count;
}

}  // namespace join_tasks

ZMP_TASK("square", join_tasks::square);
ZMP_TASK("slow_square", join_tasks::slow_square);
ZMP_TASK("worker_pid", join_tasks::worker_pid);
ZMP_TASK("tasks_in_this_process", join_tasks::tasks_in_this_process);
