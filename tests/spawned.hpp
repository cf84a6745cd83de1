#pragma once
// A program the test starts with posix_spawn (no fork of the test process: it inherits nothing),
// its stdout on a pipe.

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include "hex_text.hpp"

#include <chrono>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

extern char** environ;

namespace test_util {

// A child process started with posix_spawn (no fork of this one), its stdout on a pipe.
struct Spawned {
    pid_t pid = -1;
    FILE* out = nullptr;

    Spawned(const std::vector<std::string>& argv) {
        int fds[2];
        REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
        posix_spawn_file_actions_t actions;
        ::posix_spawn_file_actions_init(&actions);
        ::posix_spawn_file_actions_adddup2(&actions, fds[1], 1);
        std::vector<char*> args;
        for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
        args.push_back(nullptr);
        REQUIRE(::posix_spawn(&pid, args[0], &actions, nullptr, args.data(), environ) == 0);
        ::posix_spawn_file_actions_destroy(&actions);
        ::close(fds[1]);
        out = ::fdopen(fds[0], "r");
    }
    ~Spawned() {
        if (pid > 0) {
            ::kill(pid, SIGKILL);
            ::waitpid(pid, nullptr, 0);
        }
        if (out != nullptr) ::fclose(out);
    }
    std::string line() {
        char buffer[512];
        if (std::fgets(buffer, sizeof buffer, out) == nullptr) return {};
        std::string s(buffer);
        if (!s.empty() && s.back() == '\n') s.pop_back();
        return s;
    }
    /// The next line, or nothing if none comes within `limit` (lines are written whole).
    std::optional<std::string> line_within(std::chrono::milliseconds limit) {
        pollfd p{::fileno(out), POLLIN, 0};
        if (::poll(&p, 1, static_cast<int>(limit.count())) <= 0) return std::nullopt;
        return line();
    }
    int wait() {
        int status = 0;
        ::waitpid(pid, &status, 0);
        pid = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
    }
};

}  // namespace test_util
