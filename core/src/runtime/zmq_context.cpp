#include "runtime/zmq_context.hpp"

#include <memory>
#include <mutex>
#include <unordered_map>

#include "base/fork.hpp"
#include "runtime/process_global.hpp"
#include "runtime/startup.hpp"

namespace zmp::detail {
namespace {

struct Context {
    std::mutex mutex;
    zmq::context_t* context = nullptr;  // leaked on purpose: destroying it in a child hangs

    void after_fork_child() { context = nullptr; }  // the parent's: left untouched
};

// Sockets of one thread. They belong to the ZeroMQ context of the process that made them; in a
// forked child that context is the parent's, and they are abandoned rather than closed.
struct ThreadSockets {
    std::unordered_map<std::string, std::unique_ptr<zmq::socket_t>> sockets;

    void abandon() {
        for (auto& [key, socket] : sockets) (void)socket.release();
        sockets.clear();
    }
};
thread_local ForkLocal<ThreadSockets> thread_sockets;
// Trivially destructible, so reading it never sets up thread_sockets on a thread that has none.
thread_local bool thread_has_sockets = false;

}  // namespace

zmq::context_t& zmq_context() {
    Context& holder = process_global<Context>();
    std::lock_guard lock(holder.mutex);
    if (holder.context == nullptr) {
        require_init();
        holder.context = new zmq::context_t(1);
        holder.context->set(zmq::ctxopt::blocky, 0);
    }
    return *holder.context;
}

zmq::socket_ref thread_socket(const std::string& key, const std::function<zmq::socket_t(zmq::context_t&)>& make) {
    ThreadSockets& mine = thread_sockets.get();
    thread_has_sockets = true;
    auto it = mine.sockets.find(key);
    if (it == mine.sockets.end()) {
        auto socket = std::make_unique<zmq::socket_t>(make(zmq_context()));
        it = mine.sockets.emplace(key, std::move(socket)).first;
    }
    return zmq::socket_ref(*it->second);
}

void close_thread_sockets() {
    if (!thread_has_sockets) return;
    // This process's own sockets are closed; a forked child's inherited ones are abandoned by get().
    thread_sockets.get().sockets.clear();
}

}  // namespace zmp::detail
