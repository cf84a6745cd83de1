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
// Threading: run() on one thread; stop() from any thread (or a signal handler).

#include <zmq.hpp>

#include <cstdint>
#include <memory>
#include <string>

namespace zmp::detail::broker {

class Server {
public:
    struct Options {
        std::string endpoint;         ///< where clients connect: ipc://... (tcp:// later)
        std::string inproc_endpoint;  ///< optional: a second endpoint for threads of this process
        /// Offer the same-host arena (shared-memory fast path). Only meaningful when every client
        /// is on this host, i.e. for ipc:// and inproc:// endpoints.
        bool shared_memory = true;
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

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace zmp::detail::broker
