#pragma once
// The broker across hosts: Lock, RLock, Semaphore, BoundedSemaphore, Event, Condition, Barrier,
// Queue, SimpleQueue and JoinableQueue objects that processes on several machines share.
//
// One side serves: the root process's own broker also listens on a tcp endpoint (zmp::serve), or
// a broker runs alone (`zmp-broker tcp://*:6000 --authkey-file FILE`). The other side joins it
// (zmp::connect) with the same authkey. Every tcp connection uses CURVE with keys derived from the
// authkey (encrypted; both sides prove they hold it); a peer with another key is refused, and a
// joining program learns it as AuthenticationError within milliseconds. Plain tcp only when asked
// for by name (ServeOptions::insecure, connect_insecure, `zmp-broker --insecure`).
//
// What changes when a broker serves tcp:
// - Its objects keep their state in the broker (no shared-memory fast path: other hosts cannot
//   map it), so every operation is a round trip, on this host too. zmp::serve must therefore come
//   before the root's broker starts (before the first object or child is made).
// - Handles travel as on one host: inside Queue items, Pipe messages, task arguments; a process
//   that joined the broker can use a handle made by any other of its clients, and the reverse.
// - Liveness: a remote process that dies, or whose host vanishes or is cut off, is treated as
//   dead by the broker within kRemoteDeathBound (4.5 s: ZMTP heartbeats every 1 s, a connection
//   silent 3 s after a heartbeat is closed, connections are probed every 0.5 s). What it held is
//   then freed as for a local process that dies: a Lock or RLock goes to the next owner with
//   owner_died() set, Semaphore units it took come back, Barriers it waited at break, its waits
//   are dropped. A process cut off longer than that is dead for the broker even if its host comes
//   back: its later requests are refused.
// - Queue items are never delivered twice, but across hosts an item can be lost: it is the
//   consumer's once the broker has handed it to the consumer's connection (queue.hpp, "Across
//   hosts"). There is no take/ack protocol yet.
//
// Not done yet: a call blocked on a broker whose host vanishes waits until that broker answers
// (there is no client-side liveness), and a child spawned (not forked) by a joined program joins
// with the run's authkey, not the one given to connect().
//
//     // host a (the root):  zmp::write_authkey_file("cluster.key", zmp::current_authkey());
//     //                      zmp::serve("tcp://*:6000");   then make objects, hand them around
//     // host b:             zmp::connect("tcp://a:6000", zmp::read_authkey_file("cluster.key"));

#include <chrono>
#include <optional>
#include <string>

#include "zmp/authkey.hpp"

namespace zmp {

/// How zmp::serve protects its endpoint.
struct ServeOptions {
    /// The key joining programs must hold; by default this run's (current_authkey()).
    std::optional<Authkey> authkey;
    /// Plain tcp: anyone who reaches the port is admitted and every byte travels in clear text.
    /// A warning is printed on stderr. For trusted networks and tests only.
    bool insecure = false;
};

/// Makes this run's broker (the root's own) also serve `endpoint` ("tcp://*:6000",
/// "tcp://10.0.0.1:0" for a port the system picks), starting it now if it is not running yet.
/// Returns the endpoint bound, with its port ("tcp://0.0.0.0:6000"). May be called again for more
/// endpoints. Refused peers are logged, one warning record each (zmp/logging.hpp: on stderr unless
/// the program sets up its logging otherwise).
/// Errors: ProcessError outside the root process (or in one that joined another broker);
/// ValueError for an endpoint that is not tcp://, or if the broker started already with its
/// shared-memory fast path (an object or a child was made before: call serve first); OSError if
/// the endpoint cannot be bound. Threading: any thread.
///
///     zmp::init(argc, argv);
///     std::string bound = zmp::serve("tcp://*:6000");
std::string serve(const std::string& endpoint, const ServeOptions& options = {});

/// Joins the broker serving tcp `endpoint` ("tcp://head:6000") with `authkey`: from then on, the
/// objects this process makes live at that broker, and the handles it receives from that broker's
/// other clients work here. Connects now, retrying until a broker answers or `timeout` passes.
/// Errors: AuthenticationError if the broker holds another authkey (within milliseconds, not a
/// timeout); ProcessError if nobody answers within `timeout`; ValueError for an endpoint that is
/// not tcp://, or one joined already with another key. Call it early, before making objects;
/// forked children inherit the join. Threading: any thread.
///
///     zmp::connect("tcp://head:6000", zmp::read_authkey_file("cluster.key"));
///     zmp::Lock lock;  // lives at head's broker
void connect(const std::string& endpoint, const Authkey& authkey,
             std::chrono::milliseconds timeout = std::chrono::seconds(30));

/// connect() to a broker that serves plain tcp (ServeOptions::insecure, `zmp-broker --insecure`).
void connect_insecure(const std::string& endpoint, std::chrono::milliseconds timeout = std::chrono::seconds(30));

}  // namespace zmp
