#pragma once
// Live status of this process's pools, for zmp-status. A process that runs pools answers status
// requests at ipc://<run directory>/pools-<pid> (pool_status_endpoint): a REP socket served by a
// thread of its own, started with the process's first pool. Any request gets one reply, a
// msgpack map:
//
//   {"pid": this process, "name": its name, "pools": [<each pool's map: PoolCore::status()>...]}
//
// A pool registers a function that returns its packed map (or nothing once it has finished); the
// thread calls it with no lock held. The run directory is the index: zmp-status finds every
// pools-<pid> endpoint there. The thread stops at this process's exit (a forked child has none
// until it starts a pool of its own).

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace zmp::detail {

/// Adds a pool to what this process answers; starts the status thread if it is not running.
/// Returns the id to unregister it with. Never throws for a status thread that cannot start
/// (the pool runs without status; the reason is logged).
std::uint64_t register_pool_status(std::function<std::optional<std::string>()> describe);
void unregister_pool_status(std::uint64_t id);

/// The answer's map for this process, holding `pools` (each one pool's packed map). Also what a
/// pool's tcp join point answers a status request with (pool/dispatcher.hpp, kJoinStatus).
std::string pack_process_status(const std::vector<std::string>& pools);

/// The name of the endpoint file in the run directory ("pools-<pid>").
std::string pool_status_name(pid_t pid);

}  // namespace zmp::detail
