#pragma once
// Pool workers on other hosts: a process that joins a zmp::Pool bound to a tcp endpoint
// (PoolOptions::bind) and runs its tasks until the pool is done with it.
//
//     // tasks.cpp, linked into both the head program and the worker program:
//     int count_primes(int lo, int hi);
//     ZMP_TASK("count_primes", count_primes);
//     // the worker program:
//     int main(int argc, char** argv) { return zmp::worker_main(argc, argv); }
//     // on each worker host:  ./my-worker --connect tcp://head:5555 --authkey-file cluster.key
//
// Tasks reach a joined worker by registered name (ZMP_TASK / zmp::register_task, zmp/function.hpp)
// when it is another build than the head; a worker that is the same build (the head's own binary
// launched as a worker: same GNU build id) also takes unregistered functions, by address. A task
// the worker does not have fails alone, with a ValueError naming the task and the worker.
//
// Security: every connection uses CURVE with keys derived from the authkey (zmp/authkey.hpp); a
// worker holding another key is refused at once (AuthenticationError naming the endpoint, exit
// code 1 from worker_main) and the pool logs the refused address.
//
// Liveness: ZMTP heartbeats both ways (PoolOptions::heartbeat, heartbeat_timeout) and a ping from
// the pool every heartbeat. A worker that cannot reach its pool, or hears nothing from it, keeps
// reconnecting (ZeroMQ's back-off, up to 5 s between tries) and gives up after `grace`.
//
// maxtasksperchild (PoolOptions) counts a joined worker's tasks as a local one's: after that many
// the pool asks it for a fresh process, and join_pool() returns kJoinRenewed. worker_main() then
// starts its program afresh in the same process (exec of itself with the same arguments: same
// pid, new memory) when it runs one worker process, or replaces that child when it runs several.
// Either way a new worker joins in the old one's place.
//
// A program can be its own worker: `./myservice --zmp-worker tcp://head:5555 [flags below]` has
// zmp::init() run worker_main() with those flags and exit with its code instead of returning.

#include <chrono>
#include <string>

#include "zmp/authkey.hpp"

namespace zmp {

struct JoinOptions {
    /// The pool's endpoint: "tcp://head:5555".
    std::string connect;
    /// The pool's authkey.
    Authkey authkey{};
    /// How the pool names this worker in logs and errors; empty: "<host>-<pid>".
    std::string name;
    /// Gives up after this long without reaching the pool (at start, or after losing it).
    std::chrono::milliseconds grace{std::chrono::seconds(60)};
    /// ZMTP heartbeats to the pool (the pool's own settings govern how fast it notices us).
    std::chrono::milliseconds heartbeat{1000};
    std::chrono::milliseconds heartbeat_timeout{2000};
};

/// join_pool()'s code when the pool asks for a fresh process in this one's place (the worker ran
/// maxtasksperchild tasks): the caller ends this process and starts another (worker_main does).
inline constexpr int kJoinRenewed = 3;

/// Joins the pool at options.connect in this process and runs its tasks. Returns 0 when the
/// pool retired this worker (it was closed or terminated), 1 when the pool could not be reached
/// for options.grace (said on stderr), kJoinRenewed when it ran maxtasksperchild tasks. Throws AuthenticationError
/// (naming the endpoint) when the pool refuses our key, ValueError for a malformed endpoint or when the pool refuses
/// us. Threading: blocks the calling thread; a process serves one pool at a time.
///     zmp::join_pool({.connect = "tcp://head:5555", .authkey = zmp::read_authkey_file("cluster.key")});
int join_pool(const JoinOptions& options);

/// The main of a worker program (and of zmp-worker): parses
///   --connect ENDPOINT   (required) the pool to join
///   --authkey-file FILE  (required; or $ZMP_AUTHKEY_FILE) the pool's authkey file (zmp/authkey.hpp)
///   --processes N        worker processes on this host (default 1)
///   --name NAME          the worker's name (several processes: NAME-1, NAME-2...)
///   --load LIB.so        a library of tasks to load first (repeatable)
///   --grace SECONDS      give up after this long without the pool (default 60)
///   --heartbeat MS       ZMTP heartbeat interval (default 1000)
/// then joins the pool with N processes (renewed after maxtasksperchild tasks, see above) and
/// returns the exit code for main: 0 when the pool retired them all, 1 on an error (a refused key, a missing file, a
/// pool lost for good; said on stderr), 2 for bad flags. --help prints every flag.
///     int main(int argc, char** argv) { return zmp::worker_main(argc, argv); }
int worker_main(int argc, char** argv);

}  // namespace zmp
