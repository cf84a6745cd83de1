// Ctrl-C: SIGINT to a program's process group, as a terminal sends it, while the program is busy
// in a long Pool.map or blocked in Queue.get(). The program ends, every process of its group ends,
// and nothing of its run is left: no run directory, no /dev/shm entry, no guardian. The programs
// are real (tests/helpers/interrupt_probe.cpp), each in a process group of its own.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "run_leftovers.hpp"

extern char** environ;

namespace {

using namespace std::chrono_literals;

// A program started in a process group of its own, its stdout read through a pipe.
struct GroupLeader {
    pid_t pid = -1;
    int out = -1;
    std::string pending;  // read, not yet returned by line()

    // `env` ("NAME=value") is set in a copy of this process's environment.
    GroupLeader(const std::vector<std::string>& argv, const std::string& env) {
        int fds[2];
        REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
        posix_spawn_file_actions_t actions;
        ::posix_spawn_file_actions_init(&actions);
        ::posix_spawn_file_actions_adddup2(&actions, fds[1], 1);
        posix_spawnattr_t attributes;
        ::posix_spawnattr_init(&attributes);
        ::posix_spawnattr_setpgroup(&attributes, 0);  // its own group: the test is not in it
        sigset_t defaults, none;
        sigemptyset(&defaults);
        sigaddset(&defaults, SIGINT);
        sigemptyset(&none);
        ::posix_spawnattr_setsigdefault(&attributes, &defaults);
        ::posix_spawnattr_setsigmask(&attributes, &none);
        ::posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
        std::vector<char*> args;
        for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
        args.push_back(nullptr);
        std::vector<char*> environment;
        const std::string name = env.substr(0, env.find('=') + 1);  // replaces the variable's value
        for (char** e = environ; *e != nullptr; ++e)
            if (std::string_view(*e).rfind(name, 0) != 0) environment.push_back(*e);
        environment.push_back(const_cast<char*>(env.c_str()));
        environment.push_back(nullptr);
        REQUIRE(::posix_spawn(&pid, args[0], &actions, &attributes, args.data(), environment.data()) == 0);
        ::posix_spawn_file_actions_destroy(&actions);
        ::posix_spawnattr_destroy(&attributes);
        ::close(fds[1]);
        out = fds[0];
    }
    ~GroupLeader() {
        if (pid > 0) {
            ::kill(-pid, SIGKILL);
            ::waitpid(pid, nullptr, 0);
        }
        if (out >= 0) ::close(out);
    }
    // The next line of its stdout, waiting at most 60 s; empty at end of file or on time-out.
    std::string line() {
        for (;;) {
            const auto end = pending.find('\n');
            if (end != std::string::npos) {
                std::string first = pending.substr(0, end);
                pending.erase(0, end + 1);
                return first;
            }
            pollfd readable{out, POLLIN, 0};
            if (::poll(&readable, 1, 60000) != 1) return {};
            char buffer[512];
            const ssize_t n = ::read(out, buffer, sizeof buffer);
            if (n <= 0) return {};
            pending.append(buffer, static_cast<std::size_t>(n));
        }
    }
    // Its wait status once it has ended, or nothing if it has not within 30 s.
    std::optional<int> wait_status() {
        for (int i = 0; i < 3000; ++i) {
            int status = 0;
            const pid_t rc = ::waitpid(pid, &status, WNOHANG);
            if (rc == pid) {
                pid = -1;
                return status;
            }
            ::usleep(10000);
        }
        return std::nullopt;
    }
};

void interrupt_and_check(const std::string& mode) {
    run_leftovers::PrivateRunBase base;  // no other root sweeps it: only the guardian can clean up
    REQUIRE_FALSE(base.path.empty());
    GroupLeader program({HELPER_interrupt_probe, mode}, "TMPDIR=" + base.path);
    const pid_t group = program.pid;
    const std::string dir_line = program.line();
    REQUIRE(dir_line.rfind("dir ", 0) == 0);
    const std::string dir = dir_line.substr(4);
    REQUIRE(program.line() == "ready");
    REQUIRE(std::filesystem::exists(dir));
    REQUIRE(run_leftovers::wait_for_guardian_of(dir));
    REQUIRE(run_leftovers::running_in_group(group).size() >= 2);  // the program and its children
    const std::string shm_prefix = "zmp-" + std::to_string(group) + "-";
    if (mode == "queue-get") REQUIRE_FALSE(run_leftovers::shm_entries_starting(shm_prefix).empty());

    REQUIRE(::kill(-group, SIGINT) == 0);  // Ctrl-C
    const auto status = program.wait_status();
    REQUIRE(status);
    CHECK(WIFSIGNALED(*status));
    CHECK(WTERMSIG(*status) == SIGINT);

    CHECK(run_leftovers::eventually([&] { return run_leftovers::running_in_group(group).empty(); }));
    CHECK(run_leftovers::eventually([&] { return !std::filesystem::exists(dir); }));
    CHECK(run_leftovers::eventually([&] { return run_leftovers::shm_entries_starting(shm_prefix).empty(); }));
    CHECK(run_leftovers::eventually([&] { return !run_leftovers::guardian_of(dir); }));
}

}  // namespace

TEST_CASE("Ctrl-C during a long Pool.map ends the program and its workers, and leaves nothing") {
    interrupt_and_check("pool-map");
}

TEST_CASE("Ctrl-C during a blocked Queue.get ends the program and its child, and leaves nothing") {
    interrupt_and_check("queue-get");
}
