#include "runtime/run_directory.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "runtime/guardian.hpp"
#include "runtime/hooks.hpp"
#include "runtime/identity.hpp"
#include "runtime/leftovers.hpp"
#include "runtime/process_global.hpp"
#include "runtime/startup.hpp"
#include "zmp/errors.hpp"

namespace zmp::detail {

std::string run_directory_base() {
    for (const char* var : {"TMPDIR", "TEMP", "TMP"}) {
        const char* value = std::getenv(var);
        // Leave room for "/zmp-<pid>-XXXXXX/<endpoint>" within the 107-byte ipc limit.
        if (value != nullptr && *value == '/' && std::strlen(value) < 48) return value;
    }
    return "/tmp";
}

RunDirectory& run_directory() { return process_global<RunDirectory>(); }

RunDirectory::RunDirectory() {
    require_init();
    arm_exit_hooks();
}

void RunDirectory::remove_at_exit() {
    RunDirectory& dir = run_directory();
    std::lock_guard lock(dir.mutex_);
    if (dir.path_.empty() || dir.maker_ != ::getpid()) return;  // a forked child inherits the hook
    remove_run(dir.path_);
    dir.path_.clear();
}

const std::string& RunDirectory::path() {
    {
        std::lock_guard lock(mutex_);
        if (!path_.empty()) return path_;
        const std::string base = run_directory_base();
        remove_stale_runs(base);
        // Named after the process that makes it (the root), which removes it, and whose end makes
        // it stale.
        maker_ = ::getpid();
        std::string pattern = base + "/zmp-" + std::to_string(maker_) + "-XXXXXX";
        if (::mkdtemp(pattern.data()) == nullptr) throw_os_error("cannot create run directory in " + base, errno);
        path_ = pattern;  // mkdtemp makes it 0700
    }
    // Other parts of the runtime are called outside the lock: no lock is taken inside another.
    add_exit_hook(remove_at_exit, ExitStage::run_directory);
    // Should this process end without its exit path (SIGKILL, Ctrl-C), its guardian removes it.
    start_guardian(path_, this_process().self_pidfd());
    return path_;
}

void RunDirectory::adopt(std::string path) {
    std::lock_guard lock(mutex_);
    path_ = std::move(path);
}

void RunDirectory::register_segment(const std::string& name) { record_segment(path(), name); }

void RunDirectory::unregister_segment(const std::string& name) { forget_segment(path(), name); }

}  // namespace zmp::detail
