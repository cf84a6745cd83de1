#pragma once
// The run directory: a private (0700) directory that the root makes on first use, for the run's
// ipc endpoints and the record of its shared-memory segments (runtime/leftovers.hpp). Forked
// children inherit its path; spawn and forkserver children adopt() it. The root removes it, with
// every segment recorded there, when it exits; if the root ends without its exit path (SIGKILL,
// Ctrl-C), the guardian it started with the directory does (runtime/guardian.hpp).
//
//     const std::string& dir = run_directory().path();
//     run_directory().register_segment("/zmp-...");      // unlinked at the latest when the run ends

#include <sys/types.h>

#include <mutex>
#include <string>

namespace zmp::detail {

class RunDirectory {
public:
    /// The path, made on first use by the root, which starts its guardian then (and removes stale
    /// directories of dead roots whose guardian could not). OSError if it cannot be made.
    const std::string& path();
    /// The run's directory, for a spawn or forkserver child.
    void adopt(std::string path);

    /// Records a shared-memory segment (shm_open name, with its leading '/') made by a process of
    /// this run, so that it is unlinked when the run ends even if nobody unlinks it. OSError if the
    /// record cannot be written.
    void register_segment(const std::string& name);
    void unregister_segment(const std::string& name);

    /// Made once per process, by run_directory() (runtime/process_global.hpp).
    RunDirectory();
    RunDirectory(const RunDirectory&) = delete;
    RunDirectory& operator=(const RunDirectory&) = delete;
    std::mutex& fork_mutex() { return mutex_; }

private:
    // The root's last exit stage: the directory and every segment recorded in it go.
    static void remove_at_exit();

    std::mutex mutex_;
    std::string path_;
    pid_t maker_ = 0;  // the process that made it (the root), which removes it at its exit
};

/// Where run directories are made: $TMPDIR (or $TEMP, $TMP) when it is short enough for ipc
/// endpoints inside, else /tmp. A run's directory there is zmp-<root pid>-XXXXXX (zmp-status
/// finds a run by it).
std::string run_directory_base();

/// This process's run directory, made on first use (never destroyed).
RunDirectory& run_directory();

}  // namespace zmp::detail
