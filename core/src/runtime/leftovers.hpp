#pragma once
// What a run leaves behind, and how it goes. A run directory holds the run's ipc endpoints and a
// record of every shared-memory segment its processes made (an empty file per segment, in
// <dir>/shm). Removing a run unlinks each recorded segment, then removes the directory. The root
// does it when it exits; the run's guardian when the root dies without doing it; the next root on
// the machine for a run whose guardian could not (the backstop).

#include <string>

namespace zmp::detail {

/// Records segment `name` (a shm_open name, with its leading '/') in run directory `dir`.
/// OSError if the record cannot be written.
void record_segment(const std::string& dir, const std::string& name);
/// Drops the record of segment `name` (it has been unlinked).
void forget_segment(const std::string& dir, const std::string& name);

/// Unlinks every segment recorded in `dir`, then removes `dir` and everything in it. Errors are
/// ignored: whatever is already gone stays gone.
void remove_run(const std::string& dir);

/// Removes the run directories in `base` (zmp-<pid>-*) of this user whose maker (a root) has ended.
void remove_stale_runs(const std::string& base);

}  // namespace zmp::detail
