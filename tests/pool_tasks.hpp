#pragma once
// Tasks the pool and executor tests share: a value, a value late, a value or an exception.
#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>

namespace pool_tasks {

inline int square(int x) { return x * x; }

inline int sleep_then(double seconds, int value) {
    std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
    return value;
}

// Raises std::runtime_error("task <x> failed") when x is `bad`.
inline int fail_on(int x, int bad) {
    if (x == bad) throw std::runtime_error("task " + std::to_string(x) + " failed");
    return x;
}

}  // namespace pool_tasks
