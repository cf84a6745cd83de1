#pragma once
// This process's ZeroMQ context and the sockets each thread keeps in it.
//
// fork(): a child must never touch its parent's ZeroMQ objects. A fork handler drops (leaks) the
// inherited context, so that the child makes its own on first use; per-thread socket caches made
// before the fork are abandoned, not closed (base/fork.hpp: ForkLocal).
//
//     zmq::socket_ref s = thread_socket("zmp.broker " + endpoint, connect);

#include <functional>
#include <string>

#include <zmq.hpp>

namespace zmp::detail {

/// This process's ZeroMQ context, made on first use and never destroyed (destroying it in a forked
/// child hangs). Never use it on behalf of another process.
zmq::context_t& zmq_context();

/// A socket owned by the calling thread, made by `make` on first use under `key`.
zmq::socket_ref thread_socket(const std::string& key, const std::function<zmq::socket_t(zmq::context_t&)>& make);
/// Closes the calling thread's sockets (when they belong to this process).
void close_thread_sockets();

}  // namespace zmp::detail
