#pragma once
// Small helpers shared by the tests.

#include <dirent.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "zmp/process.hpp"

namespace test_util {

using Clock = std::chrono::steady_clock;

inline double seconds_since(Clock::time_point start) {
    return std::chrono::duration<double>(Clock::now() - start).count();
}

/// Runs a shell command and returns its standard output and exit status.
struct CommandResult {
    std::string out;
    int status;
};
inline CommandResult run_command(const std::string& command) {
    CommandResult result{"", -1};
    FILE* pipe = ::popen(command.c_str(), "r");
    if (pipe == nullptr) return result;
    std::array<char, 4096> chunk{};
    std::size_t n;
    while ((n = std::fread(chunk.data(), 1, chunk.size(), pipe)) > 0) result.out.append(chunk.data(), n);
    int status = ::pclose(pipe);
    result.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return result;
}

/// Names of the shared-memory segments in /dev/shm that start with `prefix`.
inline std::vector<std::string> segments_starting(const std::string& prefix) {
    std::vector<std::string> names;
    if (DIR* shm = ::opendir("/dev/shm")) {
        while (dirent* entry = ::readdir(shm)) {
            if (std::string(entry->d_name).starts_with(prefix)) names.push_back(entry->d_name);
        }
        ::closedir(shm);
    }
    return names;
}

/// `size` bytes that depend on `seed` and on their position: a message whose corruption shows.
inline std::string pattern(std::size_t size, unsigned seed) {
    std::string s(size, '\0');
    std::uint32_t x = seed * 2654435761u + 1;
    for (char& c : s) {
        x = x * 1664525u + 1013904223u;
        c = static_cast<char>(x >> 24);
    }
    return s;
}

/// Starts a child process running f().
template <class F>
zmp::Process start(F f) {
    zmp::Process p(std::move(f));
    p.start();
    return p;
}

/// Runs f (returning an int) in a child process; returns its exit code.
template <class F>
int in_child(F f) {
    zmp::Process p([f]() mutable { zmp::exit(f()); });
    p.start();
    p.join();
    return p.exitcode().value_or(-1000);
}

/// True if a process with this pid exists (and is not a zombie of ours).
inline bool pid_exists(pid_t pid) { return ::kill(pid, 0) == 0; }

}  // namespace test_util
