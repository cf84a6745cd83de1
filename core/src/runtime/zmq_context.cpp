#include "runtime/zmq_context.hpp"

#include <memory>
#include <mutex>
#include <unordered_map>

#include "base/fork.hpp"
#include "runtime/startup.hpp"

namespace zmp::detail {
namespace {

struct Context {
    std::mutex mutex;
    zmq::context_t* context = nullptr;  // leaked on purpose: destroying it in a child hangs
};

// The fork handlers use the pointer, not context_holder(), whose first call may still be under way.
Context* the_context = nullptr;

void lock_context() { the_context->mutex.lock(); }
void unlock_context() { the_context->mutex.unlock(); }
void drop_parents_context() {
    the_context->mutex.unlock();
    the_context->context = nullptr;  // the parent's: left untouched
}

Context& context_holder() {
    static Context* made = [] {
        the_context = new Context();
        on_fork(ForkLayer::runtime, {lock_context, unlock_context, drop_parents_context});
        return the_context;
    }();
    return *made;
}

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
    Context& holder = context_holder();
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
