#pragma once
// Running this binary again (/proc/self/exe, with the argv zmp::init() recorded), as spawn does
// for each child and the fork server's starter does for the server. zmp::init() in the new
// process finds the handed descriptor and takes over from there.

#include <sys/types.h>

#include <string>

namespace zmp::detail {

/// The program set_executable() chose, or empty for this binary.
std::string spawn_executable();

/// Runs this binary (or the program set_executable() chose) again with one descriptor handed to it as fd 3 and
/// announced in the environment variable `env_name` (=3); every other descriptor beyond stdio is closed in the new
/// process, and its signal mask is empty. OSError if posix_spawn fails.
pid_t exec_self(const char* env_name, int handed_fd);

}  // namespace zmp::detail
