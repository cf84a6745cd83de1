#include "process/exec_self.hpp"

#include <signal.h>
#include <spawn.h>

#include <cstring>
#include <string>
#include <vector>

#include "runtime/run.hpp"
#include "zmp/errors.hpp"

extern char** environ;

namespace zmp::detail {

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

    const auto& args = this_run().argv();
    std::vector<char*> argv;
    argv.reserve(args.size() + 2);
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    std::string program_name = "zmp-child";
    if (argv.empty()) argv.push_back(program_name.data());
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
    const int rc = ::posix_spawn(&pid, "/proc/self/exe", &actions, &attributes, argv.data(), env.data());
    ::posix_spawn_file_actions_destroy(&actions);
    ::posix_spawnattr_destroy(&attributes);
    if (rc != 0) throw_os_error("posix_spawn", rc);
    return pid;
}

}  // namespace zmp::detail
