#include "process/exec_self.hpp"

#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/process_global.hpp"
#include "runtime/run.hpp"
#include "zmp/context.hpp"
#include "zmp/errors.hpp"

extern char** environ;

namespace zmp::detail {
namespace {

// set_executable()'s choice: empty for this binary. Copied into forked children.
struct Executable {
    std::mutex mutex;
    std::string path;
};

Executable& executable() { return process_global<Executable, ForkLayer::service>(); }

// The bytes every program linked with zmp's start-up holds: the variable a spawned child's
// zmp::init() looks for.
constexpr std::string_view kZmpMarker = "ZMP_SPAWN_FD";

bool holds_zmp_marker(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::string window;
    std::vector<char> buffer(1 << 16);
    while (in.read(buffer.data(), static_cast<std::streamsize>(buffer.size())) || in.gcount() > 0) {
        // The last few bytes of the previous chunk stay in front: a marker may straddle two.
        window.append(buffer.data(), static_cast<std::size_t>(in.gcount()));
        if (window.find(kZmpMarker) != std::string::npos) return true;
        window.erase(0, window.size() - std::min(window.size(), kZmpMarker.size() - 1));
    }
    return false;
}

}  // namespace

std::string spawn_executable() {
    Executable& e = executable();
    std::lock_guard lock(e.mutex);
    return e.path;
}

pid_t exec_self(const char* env_name, int handed_fd) {
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attributes;
    ::posix_spawn_file_actions_init(&actions);
    ::posix_spawnattr_init(&attributes);
    // The child gets the handed descriptor as fd 3 and nothing else beyond stdio: descriptors
    // this process opened do not leak into it.
    ::posix_spawn_file_actions_adddup2(&actions, handed_fd, 3);
    ::posix_spawn_file_actions_addclosefrom_np(&actions, 4);
    sigset_t none;
    sigemptyset(&none);
    ::posix_spawnattr_setsigmask(&attributes, &none);
    ::posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK);

    std::string program = spawn_executable();
    const bool other_program = !program.empty();
    if (!other_program) program = "/proc/self/exe";
    const auto& args = this_run().argv();
    std::vector<char*> argv;
    argv.reserve(args.size() + 2);
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    std::string program_name = "zmp-child";
    if (argv.empty()) argv.push_back(program_name.data());
    if (other_program) argv[0] = program.data();  // what ps shows is what runs
    argv.push_back(nullptr);

    const std::string marker = std::string(env_name) + "=3";
    std::vector<char*> env;
    for (char** e = environ; *e != nullptr; ++e) {
        if (std::strncmp(*e, "ZMP_SPAWN_FD=", 13) != 0 && std::strncmp(*e, "ZMP_FORKSERVER_FD=", 18) != 0) {
            env.push_back(*e);
        }
    }
    env.push_back(const_cast<char*>(marker.c_str()));
    env.push_back(nullptr);

    pid_t pid = 0;
    const int rc = ::posix_spawn(&pid, program.c_str(), &actions, &attributes, argv.data(), env.data());
    ::posix_spawn_file_actions_destroy(&actions);
    ::posix_spawnattr_destroy(&attributes);
    if (rc != 0) throw_os_error("posix_spawn", rc);
    return pid;
}

}  // namespace zmp::detail

namespace zmp {

void set_executable(const std::string& path) {
    if (!path.empty()) {
        struct stat st {};
        if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode) || ::access(path.c_str(), X_OK) != 0) {
            throw ValueError("set_executable: " + path + " is not an executable file");
        }
        if (!detail::holds_zmp_marker(path)) {
            throw ValueError("set_executable: " + path +
                             " is not a program linked with zmp (a spawned child's main() must call zmp::init)");
        }
    }
    detail::Executable& e = detail::executable();
    std::lock_guard lock(e.mutex);
    e.path = path;
}

}  // namespace zmp
