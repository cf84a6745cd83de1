#pragma once
// The broker: one actor that owns every coordination object of a run — Lock, RLock, Semaphore,
// BoundedSemaphore, Event, Condition, Barrier — and every queue's items, and serves them to every
// process of the run. It is a single-threaded event loop over a ROUTER socket, the pidfds of its
// client processes (a process's death is noticed as soon as its pidfd becomes readable) and an
// eventfd that stops it; deadlines are the poll timeout. The protocol is in protocol.hpp; each
// kind of object is a file of objects/ (objects/object.hpp is the contract between the two).
//
// By default the root process runs one on a background thread (embedded.cpp); the same class runs
// standalone in zmp-broker. Malformed input never stops it: garbage is counted and dropped, a
// readable request that is wrong gets an error reply.
//
// Across hosts (serve_tcp): each tcp endpoint is a ROUTER of its own, protected by CURVE keys
// derived from an authkey (transport/security.hpp). Its clients are remote: they say HELLO with a
// random incarnation number instead of being known by pid, get no arena (every call takes the
// socket path), and their death is learnt by liveness instead of a pidfd: ZMTP heartbeats close a
// connection whose host stopped answering (kHeartbeatIvl + kHeartbeatTimeout), and every
// kLivenessProbe the broker probes each remote connection; a remote client with no connection
// left is dead, and goes through the same on_death as a local one (locks freed for the next owner
// with owner_died, semaphore units returned, barriers broken, deliveries given back).
//
// Threading: run() on one thread; stop() from any thread (or a signal handler).

#include <zmq.hpp>

#include <cstdint>
#include <memory>
#include <string>

#include "zmp/transport/security.hpp"

namespace zmp::detail::broker {

class Server {
public:
    struct Options {
        std::string endpoint;         ///< where clients on this host connect: ipc://... (may be empty)
        std::string inproc_endpoint;  ///< optional: a second endpoint for threads of this process
        /// Offer the same-host arena (shared-memory fast path). Only meaningful when every client
        /// is on this host, i.e. for ipc:// and inproc:// endpoints.
        bool shared_memory = true;
        /// The broker's name inside handles (they say which broker their object lives at): by
        /// default `endpoint`, or a random one if that is empty.
        std::string name;
    };

    /// Binds the endpoints. Throws OSError (or ValueError for an ipc path that is too long).
    Server(zmq::context_t& context, Options options);
    ~Server();
    Server(const Server&) = delete;
    Server& operator=(const Server&) = delete;

    /// Serves until stop(). Never throws for anything a client sends.
    void run();
    /// Makes run() return soon; async-signal-safe.
    void stop() noexcept;

    /// Parks run() between two turns of its loop until resume(): returns once it is parked (or
    /// has returned); a run() still to start parks as soon as it does. Call it only while some
    /// thread runs or is about to run run(). For fork() under AddressSanitizer, whose allocator,
    /// unlike glibc's, is not fork-safe: a child could inherit one of its locks held by this thread.
    void pause();
    void resume();

    const std::string& endpoint() const;
    /// The name handles of this broker carry; remote clients learn it with HELLO.
    const std::string& name() const;

    /// Binds `endpoint` (tcp://host:port; port 0 or * picks one) on a ROUTER of its own protected
    /// by `security`, and serves remote clients there; returns the endpoint bound (with its port).
    /// May be called before run() or from another thread while it runs. ValueError for an
    /// endpoint that is not tcp://, or for a broker with shared memory (its objects' state would
    /// be out of remote clients' reach); OSError if it cannot bind.
    std::string serve_tcp(const std::string& endpoint, const transport::TcpSecurity& security);

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace zmp::detail::broker
