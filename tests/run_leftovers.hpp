#pragma once
// What a run can leave behind once its root is gone, as tests look for it: its run directory, its
// /dev/shm entries, its guardian (runtime/guardian.hpp: command line "zmp-guardian <run dir>"),
// and live processes of a process group. Zombies count as gone: they hold nothing.

#include <dirent.h>
#include <signal.h>
#include <sys/types.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <cstdio>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace run_leftovers {

/// The state letter and process group of `pid` from /proc/<pid>/stat; empty if it is gone.
struct ProcStat {
    char state = 0;
    pid_t group = 0;
};
inline std::optional<ProcStat> proc_stat(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string text;
    if (!std::getline(in, text)) return std::nullopt;
    const auto close = text.rfind(')');  // the command name may hold spaces and parentheses
    if (close == std::string::npos) return std::nullopt;
    std::istringstream rest(text.substr(close + 2));
    ProcStat stat;
    pid_t parent = 0;
    rest >> stat.state >> parent >> stat.group;
    return stat;
}

/// True while `pid` runs (a zombie has ended).
inline bool running(pid_t pid) {
    const auto stat = proc_stat(pid);
    return stat && stat->state != 'Z' && stat->state != 'X';
}

inline std::vector<pid_t> all_pids() {
    std::vector<pid_t> pids;
    if (DIR* proc = ::opendir("/proc")) {
        while (dirent* entry = ::readdir(proc)) {
            const pid_t pid = static_cast<pid_t>(std::atoi(entry->d_name));
            if (pid > 0) pids.push_back(pid);
        }
        ::closedir(proc);
    }
    return pids;
}

/// The running processes of process group `group`.
inline std::vector<pid_t> running_in_group(pid_t group) {
    std::vector<pid_t> found;
    for (pid_t pid : all_pids()) {
        const auto stat = proc_stat(pid);
        if (stat && stat->group == group && stat->state != 'Z' && stat->state != 'X') found.push_back(pid);
    }
    return found;
}

/// The running guardian of run directory `dir`, once it waits for its root: its command line is
/// "zmp-guardian <dir>" from its exec, its name "zmp-guardian" once it has started up.
inline std::optional<pid_t> guardian_of(const std::string& dir) {
    const std::string wanted = std::string("zmp-guardian") + '\0' + dir + '\0';
    for (pid_t pid : all_pids()) {
        const std::string proc = "/proc/" + std::to_string(pid);
        std::ifstream cmdline(proc + "/cmdline");
        std::stringstream text;
        text << cmdline.rdbuf();
        if (text.str() != wanted) continue;
        std::ifstream comm(proc + "/comm");
        std::string name;
        std::getline(comm, name);
        if (name == "zmp-guardian" && running(pid)) return pid;
    }
    return std::nullopt;
}

/// The running guardians of run directories whose path starts with `prefix`.
inline std::vector<pid_t> guardians_under(const std::string& prefix) {
    const std::string wanted = std::string("zmp-guardian") + '\0' + prefix;
    std::vector<pid_t> found;
    for (pid_t pid : all_pids()) {
        std::ifstream cmdline("/proc/" + std::to_string(pid) + "/cmdline");
        std::stringstream text;
        text << cmdline.rdbuf();
        if (text.str().starts_with(wanted) && running(pid)) found.push_back(pid);
    }
    return found;
}

/// The names in /dev/shm that start with `prefix`.
inline std::vector<std::string> shm_entries_starting(const std::string& prefix) {
    std::vector<std::string> names;
    if (DIR* shm = ::opendir("/dev/shm")) {
        while (dirent* entry = ::readdir(shm))
            if (std::string(entry->d_name).starts_with(prefix)) names.push_back(entry->d_name);
        ::closedir(shm);
    }
    return names;
}

/// Polls `done` every 10 ms until it holds or `cap` has passed; returns its last answer. The cap
/// is generous on purpose: it bounds a failure, not the expected speed.
template <class F>
bool eventually(F done, std::chrono::seconds cap = std::chrono::seconds(30)) {
    const auto until = std::chrono::steady_clock::now() + cap;
    for (;;) {
        if (done()) return true;
        if (std::chrono::steady_clock::now() >= until) return done();
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
}

/// The guardian of run directory `dir`, waiting for it to show: it starts up a moment after the
/// run directory is made.
inline std::optional<pid_t> wait_for_guardian_of(const std::string& dir) {
    std::optional<pid_t> guardian;
    eventually([&] { return (guardian = guardian_of(dir)).has_value(); });
    return guardian;
}

/// SIGKILLs the guardian of `dir` and waits until it has ended; false if there was none, or if it
/// did not end within the cap.
inline bool kill_guardian(const std::string& dir) {
    const auto guardian = wait_for_guardian_of(dir);
    if (!guardian) return false;
    ::kill(*guardian, SIGKILL);
    return eventually([&] { return !running(*guardian); });
}

/// A directory of runs of its own, for the programs a test starts (their TMPDIR): no other zmp
/// root on the machine sweeps the stale runs a test leaves there on purpose. Removed, with what it
/// holds, at the end of the test.
struct PrivateRunBase {
    std::string path;

    PrivateRunBase() {
        char pattern[] = "/tmp/zmp-test-runs-XXXXXX";  // not zmp-<pid>-: no sweep takes it
        if (::mkdtemp(pattern) != nullptr) path = pattern;
    }
    ~PrivateRunBase() {
        std::error_code ignored;
        if (!path.empty()) std::filesystem::remove_all(path, ignored);
    }
    PrivateRunBase(const PrivateRunBase&) = delete;
    PrivateRunBase& operator=(const PrivateRunBase&) = delete;

    /// A shell prefix that runs a command with its runs here.
    std::string env() const { return "TMPDIR=" + path + " "; }
};

}  // namespace run_leftovers
