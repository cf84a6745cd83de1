#include "runtime/guardian.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <vector>

#include "runtime/leftovers.hpp"

extern char** environ;

namespace zmp::detail {
namespace {

// The guardian's environment variable (the run directory); the root's pidfd is its fd 3.
constexpr char kVariable[] = "ZMP_GUARDIAN";
constexpr int kRootPidfd = 3;

// The pid a pidfd refers to, from /proc/self/fdinfo: -1 once that process has ended; nothing if
// `fd` is not a pidfd.
std::optional<pid_t> pid_of_pidfd(int fd) {
    char path[64];
    std::snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
    FILE* info = std::fopen(path, "re");
    if (info == nullptr) return std::nullopt;
    char line[128];
    std::optional<pid_t> pid;
    int value = 0;
    while (!pid && std::fgets(line, sizeof line, info) != nullptr)
        if (std::sscanf(line, "Pid: %d", &value) == 1) pid = value;
    std::fclose(info);
    return pid;
}

// The root pid in the name of run directory `dir` (zmp-<pid>-XXXXXX) if it is a directory this
// user owns; 0 otherwise. The guardian removes nothing else, whatever its environment says.
pid_t root_of_run_directory(const char* dir) {
    const char* base = std::strrchr(dir, '/');
    if (base == nullptr || base == dir) return 0;
    int pid = 0, prefix = 0;
    if (std::sscanf(base + 1, "zmp-%d-%n", &pid, &prefix) != 1 || prefix == 0 || pid <= 0) return 0;
    if (std::strlen(base + 1 + prefix) != 6) return 0;  // mkdtemp's XXXXXX
    struct stat status {};
    if (::lstat(dir, &status) != 0 || !S_ISDIR(status.st_mode) || status.st_uid != ::getuid()) return 0;
    return pid;
}

// Waits until the root has ended, then removes its run directory and every segment recorded there.
[[noreturn]] void guard(const char* dir) {
    ::prctl(PR_SET_NAME, "zmp-guardian");
    for (;;) {
        pollfd ended{kRootPidfd, POLLIN, 0};
        const int rc = ::poll(&ended, 1, -1);
        if (rc > 0) break;
        if (rc < 0 && errno != EINTR) ::_exit(1);
    }
    remove_run(dir);
    ::_exit(0);
}

// Runs before the program's own static initialisers (priority 101 comes first in this binary), so
// that a guardian never runs any of the program's code.
__attribute__((constructor(101))) void become_guardian_if_asked() {
    const char* dir = std::getenv(kVariable);
    if (dir == nullptr) return;
    const std::optional<pid_t> watched = pid_of_pidfd(kRootPidfd);
    if (!watched) {
        ::unsetenv(kVariable);  // a stray variable, not a root's request: this is an ordinary run
        return;
    }
    // A guardian from here on, which never runs the program. A root that ended before its guardian
    // got here shows as -1: the directory is still its own, unless it removed it at its exit.
    const pid_t root = root_of_run_directory(dir);
    if (root != 0 && (*watched == root || *watched == -1)) guard(dir);
    ::_exit(0);
}

}  // namespace

bool start_guardian(const std::string& dir, int self_pidfd) {
    if (self_pidfd < 0) return false;
    // Everything the new processes need is made here: between fork and exec they make system
    // calls only (this process may have other threads, whose locks a fork copies held).
    const std::string variable = std::string(kVariable) + "=" + dir;
    std::vector<char*> env;
    for (char** e = environ; *e != nullptr; ++e) {
        if (std::strncmp(*e, "ZMP_", 4) != 0) env.push_back(*e);
    }
    env.push_back(const_cast<char*>(variable.c_str()));
    env.push_back(nullptr);
    char name[] = "zmp-guardian";
    std::string dir_arg = dir;
    char* argv[] = {name, dir_arg.data(), nullptr};

    // The guardian starts with a copy of every descriptor of this process, a Pipe's ends among
    // them, until it closes them: `dropped` reads end of file once it has, and this call returns
    // only then, so that no end of this process outlives its closing here (a reader's EOF would
    // come late).
    int dropped[2];
    if (::pipe2(dropped, O_CLOEXEC) != 0) return false;

    // _Fork runs no fork handlers: the intermediate and the guardian touch nothing of this process.
    const pid_t middle = ::_Fork();
    if (middle < 0) {
        ::close(dropped[0]);
        ::close(dropped[1]);
        return false;
    }
    if (middle == 0) {
        const pid_t guardian = ::_Fork();
        if (guardian != 0) ::_exit(guardian < 0 ? 1 : 0);  // the guardian is nobody's child
        ::setsid();
        const int pidfd = ::fcntl(self_pidfd, F_DUPFD, 10);
        const int null = ::open("/dev/null", O_RDWR);
        if (pidfd < 0 || null < 0) ::_exit(1);
        for (int fd = 0; fd <= 2; ++fd)
            if (null != fd) ::dup2(null, fd);
        if (null > 2) ::close(null);
        ::dup2(pidfd, kRootPidfd);
        ::close_range(kRootPidfd + 1, ~0U, 0);
        sigset_t none;
        sigemptyset(&none);
        ::sigprocmask(SIG_SETMASK, &none, nullptr);
        ::execve("/proc/self/exe", argv, env.data());
        ::_exit(127);
    }
    ::close(dropped[1]);
    int status = 0;
    while (::waitpid(middle, &status, 0) < 0 && errno == EINTR) {
    }
    // End of file once the guardian's close_range (or its death) dropped the write end.
    char byte;
    while (::read(dropped[0], &byte, 1) < 0 && errno == EINTR) {
    }
    ::close(dropped[0]);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

}  // namespace zmp::detail
