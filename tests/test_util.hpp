#pragma once
// Small helpers shared by the tests.

#include <dirent.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <type_traits>
#include <vector>

#include "zmp/process.hpp"

namespace test_util {

using Clock = std::chrono::steady_clock;

/// Waits for child `pid`: its exit status, or 100 + the signal that killed it.
inline int exit_code(pid_t pid) {
    int status = 0;
    ::waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 100 + WTERMSIG(status);
}

/// For a forked child: runs `argv` with stdout and stderr appended to `log` (if given); exit code
/// 127 when it cannot be run.
[[noreturn]] inline void exec_logged(const std::vector<std::string>& argv, const std::string& log) {
    if (!log.empty()) {
        const int out = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (out >= 0) {
            ::dup2(out, 1);
            ::dup2(out, 2);
        }
    }
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    ::_exit(127);
}

/// One line to `fd` (a pipe between a test and its children).
inline void write_line(int fd, const std::string& line) {
    std::string text = line + "\n";
    (void)!::write(fd, text.data(), text.size());
}

/// One line from `fd`, without its newline (empty at end of file).
inline std::string read_line(int fd) {
    std::string line;
    char c;
    while (::read(fd, &c, 1) == 1 && c != '\n') line += c;
    return line;
}

/// The resident set size of process `pid` (0: this one), in KiB; -1 if it cannot be read.
inline long rss_kib(pid_t pid = 0) {
    std::ifstream status(pid == 0 ? std::string("/proc/self/status") : "/proc/" + std::to_string(pid) + "/status");
    std::string key;
    long value = 0;
    while (status >> key) {
        if (key == "VmRSS:") {
            status >> value;
            return value;
        }
        status.ignore(4096, '\n');
    }
    return -1;
}

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

/// The state letter of /proc/<pid>/stat ('Z' for a zombie, 'T' stopped...), or 0 once the pid is gone.
inline char process_state(pid_t pid) {
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    const std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
    const auto paren = text.rfind(')');
    return paren == std::string::npos || paren + 2 >= text.size() ? '\0' : text[paren + 2];
}

/// f(0), f(1), ... computed as they are read, `count` of them or without end: a lazy input range
/// written by hand, as a user's own generator would be. (The tests do not use std::views: clang 14
/// cannot compile libstdc++ 12's.) The bounded one is a sized range, the endless one is not.
template <class F, bool Bounded>
class Generated {
public:
    class iterator {
    public:
        using value_type = std::invoke_result_t<const F&, long>;
        using difference_type = std::ptrdiff_t;
        iterator() = default;
        iterator(const F* f, long index) : f_(f), index_(index) {}
        value_type operator*() const { return (*f_)(index_); }
        iterator& operator++() {
            ++index_;
            return *this;
        }
        iterator operator++(int) {
            iterator before = *this;
            ++index_;
            return before;
        }
        bool operator==(const iterator& other) const { return index_ == other.index_; }
        friend difference_type operator-(const iterator& a, const iterator& b) { return a.index_ - b.index_; }

    private:
        const F* f_ = nullptr;
        long index_ = 0;
    };

    Generated(long count, F f) : count_(count), f_(std::move(f)) {}
    iterator begin() const { return iterator(&f_, 0); }
    auto end() const {
        if constexpr (Bounded)
            return iterator(&f_, count_);
        else
            return std::unreachable_sentinel;
    }

private:
    long count_;
    F f_;
};

template <class F>
Generated<F, true> generated(long count, F f) {
    return {count, std::move(f)};
}
template <class F>
Generated<F, false> generated_endless(F f) {
    return {0, std::move(f)};
}

}  // namespace test_util
