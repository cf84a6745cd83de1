#include "pool/status_server.hpp"

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <map>
#include <memory>
#include <mutex>
#include <thread>

#include <msgpack.hpp>
#include <zmq.hpp>

#include "base/fork.hpp"
#include "base/wake_fd.hpp"
#include "base/log.hpp"
#include "runtime/hooks.hpp"
#include "runtime/identity.hpp"
#include "runtime/run_directory.hpp"
#include "runtime/zmq_context.hpp"
#include "zmp/transport/zsocket.hpp"

namespace zmp::detail {
namespace {

// The process's registry and its thread; one per fork generation (a forked child's copy of its
// parent's is left alone: its thread does not exist there).
class StatusServer {
public:
    explicit StatusServer(std::uint64_t generation) : generation_(generation) {}
    std::uint64_t generation() const { return generation_; }

    std::uint64_t add(std::function<std::optional<std::string>()> describe) {
        std::lock_guard lock(mutex_);
        const std::uint64_t id = next_id_++;
        pools_.emplace(id, std::move(describe));
        if (!started_) {
            started_ = true;
            start();
        }
        return id;
    }

    void remove(std::uint64_t id) {
        std::lock_guard lock(mutex_);
        pools_.erase(id);
    }

    void stop() {
        // A forked child inherits the hook, not the thread (its wake descriptor is the parent's).
        if (generation_ != fork_generation() || !thread_.joinable()) return;
        wake_.notify();
        thread_.join();
    }

private:
    void start() {
        try {
            socket_ = transport::open_socket(zmq_context(), zmq::socket_type::rep);
            endpoint_ = transport::ipc_endpoint(run_directory().path(), pool_status_name(::getpid()));
            socket_.bind(endpoint_);
        } catch (const std::exception& e) {
            if (log_enabled(LogLevel::warning))
                log_record(LogLevel::warning, std::string("pool status cannot be served: ") + e.what());
            return;
        }
        // The thread takes no signals: they are the program's, for its own threads.
        sigset_t all, previous;
        ::sigfillset(&all);
        ::pthread_sigmask(SIG_SETMASK, &all, &previous);
        thread_ = std::thread([this] { serve(); });
        ::pthread_sigmask(SIG_SETMASK, &previous, nullptr);
        add_exit_hook([this] { stop(); });
    }

    std::string answer() {
        std::vector<std::function<std::optional<std::string>()>> pools;
        {
            std::lock_guard lock(mutex_);
            for (const auto& [id, describe] : pools_) pools.push_back(describe);
        }
        std::vector<std::string> described;
        for (auto& describe : pools) {
            try {
                if (auto packed = describe()) described.push_back(std::move(*packed));
            } catch (...) {
            }
        }
        return pack_process_status(described);
    }

    void serve() {
        for (;;) {
            zmq_pollitem_t items[] = {{socket_.handle(), 0, ZMQ_POLLIN, 0}, {nullptr, wake_.fd(), ZMQ_POLLIN, 0}};
            if (zmq_poll(items, 2, -1) < 0) {
                if (zmq_errno() == EINTR) continue;
                break;
            }
            if (items[1].revents != 0) break;
            zmq::message_t request;
            try {
                if (!socket_.recv(request, zmq::recv_flags::dontwait)) continue;
                while (request.more()) (void)socket_.recv(request);  // any request gets the answer
                const std::string reply = answer();
                socket_.send(zmq::const_buffer(reply.data(), reply.size()), zmq::send_flags::none);
            } catch (const zmq::error_t&) {
                break;
            }
        }
        socket_.close();
        ::unlink(endpoint_.c_str() + 6);  // past "ipc://"
    }

    const std::uint64_t generation_;
    std::mutex mutex_;
    std::map<std::uint64_t, std::function<std::optional<std::string>()>> pools_;
    std::uint64_t next_id_ = 1;
    bool started_ = false;
    zmq::socket_t socket_;
    std::string endpoint_;
    WakeFd wake_;
    std::thread thread_;
};

std::mutex server_mutex;
StatusServer* server = nullptr;  // never destroyed: stopped by an exit hook

StatusServer& this_server() {
    std::lock_guard lock(server_mutex);
    if (server == nullptr || server->generation() != fork_generation()) server = new StatusServer(fork_generation());
    return *server;
}

}  // namespace

std::string pack_process_status(const std::vector<std::string>& pools) {
    msgpack::sbuffer out;
    msgpack::packer<msgpack::sbuffer> pk(out);
    pk.pack_map(3);
    pk.pack("pid"), pk.pack(static_cast<std::int64_t>(::getpid()));
    pk.pack("name"), pk.pack(this_process().name());
    pk.pack("pools"), pk.pack_array(static_cast<std::uint32_t>(pools.size()));
    for (const std::string& pool : pools) out.write(pool.data(), pool.size());
    return std::string(out.data(), out.size());
}

std::string pool_status_name(pid_t pid) { return "pools-" + std::to_string(pid); }

std::uint64_t register_pool_status(std::function<std::optional<std::string>()> describe) {
    return this_server().add(std::move(describe));
}

void unregister_pool_status(std::uint64_t id) { this_server().remove(id); }

}  // namespace zmp::detail
