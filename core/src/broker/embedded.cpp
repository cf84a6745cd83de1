// The root process's own broker, on a background thread (embedded by default).
//
// Started before the root's first child (a runtime start hook, client.cpp) or by the first
// object the root makes, bound in the run directory, and stopped by an exit hook after the root's
// children are joined. A forked child inherits the endpoint but never touches the thread, the
// socket or the broker::Server object, which belong to its parent: every entry point checks the pid.
//
// zmp::serve (remote.cpp) starts it without shared memory and has it serve tcp endpoints too.

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <mutex>
#include <thread>

#include "base/fork.hpp"
#include "broker/server.hpp"
#include "runtime/hooks.hpp"
#include "runtime/identity.hpp"
#include "runtime/run.hpp"
#include "runtime/run_directory.hpp"
#include "runtime/zmq_context.hpp"
#include "broker/client.hpp"
#include "zmp/errors.hpp"
#include "zmp/transport/zsocket.hpp"

namespace zmp::detail {
namespace {

struct Embedded {
    pid_t host = 0;
    std::string endpoint;
    std::string inproc;
    bool shared_memory = true;  // false: it may serve tcp (zmp::serve)
    std::unique_ptr<broker::Server> server;
    std::thread thread;
    std::atomic<bool> stopped{false};
};

std::mutex embedded_mutex;                 // only the root takes it
std::atomic<Embedded*> embedded{nullptr};  // never destroyed: forked children hold a copy of the pointer

#if defined(__SANITIZE_ADDRESS__)
// AddressSanitizer's allocator (GCC 12) has no fork handlers: a child forked while the broker
// thread allocates can inherit an allocator lock held for ever. The broker thread is parked across
// fork() in such builds. glibc's malloc is fork-safe, so normal builds need none of this.
void park_for_fork() {
    Embedded* e = embedded.load();
    if (e != nullptr && e->host == ::getpid() && !e->stopped.load()) e->server->pause();
}
void unpark_after_fork() {
    Embedded* e = embedded.load();
    if (e != nullptr && e->host == ::getpid() && !e->stopped.load()) e->server->resume();
}
#endif

void stop_embedded() {
    Embedded* e = embedded.load();
    if (e == nullptr || e->host != this_process().pid() || e->stopped.exchange(true)) return;
    e->server->stop();
    e->thread.join();
    e->server.reset();  // closes its socket, unlinks its endpoint and its shared memory
}

}  // namespace

namespace {

// Starts the embedded broker (call with embedded_mutex held, in the root, when none runs).
// `shared_memory`: offer the same-host fast path; a broker that will serve tcp has none.
std::string start_embedded(ThisRun& run, bool shared_memory) {
    auto e = std::make_unique<Embedded>();
    e->host = this_process().pid();
    e->endpoint = transport::ipc_endpoint(run_directory().path(), "broker");
    e->inproc = "inproc://zmp-broker-" + std::to_string(e->host);
    e->shared_memory = shared_memory;
    e->server = std::make_unique<broker::Server>(zmq_context(),
                                                 broker::Server::Options{e->endpoint, e->inproc, shared_memory, {}});
    // The broker thread takes no signals: they are the program's, for its own threads.
    sigset_t all, previous;
    ::sigfillset(&all);
    ::pthread_sigmask(SIG_SETMASK, &all, &previous);
    e->thread = std::thread([server = e->server.get()] { server->run(); });
    ::pthread_sigmask(SIG_SETMASK, &previous, nullptr);

    std::string endpoint = e->endpoint;
    embedded.store(e.release());
#if defined(__SANITIZE_ADDRESS__)
    static const bool fork_handlers = [] {
        on_fork(ForkLayer::service, {park_for_fork, unpark_after_fork, nullptr});
        return true;
    }();
    (void)fork_handlers;
#endif
    add_exit_hook(stop_embedded);
    run.set_broker_endpoint(endpoint);
    return endpoint;
}

}  // namespace

std::string ensure_broker() {
    ThisRun& run = this_run();
    std::string endpoint = run.broker_endpoint();
    if (!endpoint.empty()) return endpoint;
    if (!run.is_root()) {
        throw ProcessError(
            "this process has no broker: a child uses its root's, which it inherits by fork or is handed at spawn");
    }
    std::lock_guard lock(embedded_mutex);
    endpoint = run.broker_endpoint();
    if (!endpoint.empty()) return endpoint;
    return start_embedded(run, true);
}

std::string serve_embedded_tcp(const std::string& endpoint, const transport::TcpSecurity& security) {
    ThisRun& run = this_run();
    if (!run.is_root()) throw ProcessError("zmp::serve: only the root process runs the run's broker");
    std::lock_guard lock(embedded_mutex);
    Embedded* e = embedded.load();
    const bool ours = e != nullptr && e->host == this_process().pid();
    if (!ours && !run.broker_endpoint().empty())
        throw ProcessError("zmp::serve: this process uses another broker (" + run.broker_endpoint() + ")");
    if (!ours) {
        (void)start_embedded(run, false);
        e = embedded.load();
    }
    if (e->stopped.load()) throw ProcessError("zmp::serve: the broker has stopped: this process is exiting");
    if (e->shared_memory)
        throw ValueError(
            "zmp::serve: the broker started already with its shared-memory fast path (an object or a child was made "
            "first), whose state other hosts cannot reach: call zmp::serve before making objects or children");
    return e->server->serve_tcp(endpoint, security);
}

std::string embedded_inproc_endpoint(const std::string& endpoint) {
    Embedded* e = embedded.load();
    if (e == nullptr || e->host != this_process().pid() || e->endpoint != endpoint) return {};
    if (e->stopped.load()) throw broker::BrokerLost("the broker has stopped: this process is exiting");
    return e->inproc;
}

}  // namespace zmp::detail
