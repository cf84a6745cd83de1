// The dispatcher's side of workers that join over tcp: the ROUTER they connect to (CURVE keys from
// the pool's authkey, refusals logged), admission, pings, and losing or retiring them. Tasks and
// results are the same messages as over a local link (dispatcher.cpp sends and reads them).
#include <zmq.h>

#include <algorithm>
#include <string>

#include "base/log.hpp"
#include "pool/dispatcher_state.hpp"
#include "pool/status_server.hpp"
#include "zmp/errors.hpp"
#include "zmp/transport/codec.hpp"
#include "zmp/transport/zsocket.hpp"

namespace zmp::detail {
namespace {

void log_warning(const std::string& message) {
    if (log_enabled(LogLevel::warning)) log_record(LogLevel::warning, message);
}

void log_info(const std::string& message) {
    if (log_enabled(LogLevel::info)) log_record(LogLevel::info, message);
}

std::string packed_control(int kind, const std::string& reason) {
    msgpack::sbuffer buffer;
    msgpack::packer<msgpack::sbuffer> out(buffer);
    if (reason.empty()) {
        out.pack_array(1);
        out.pack(kind);
    } else {
        out.pack_array(2);
        out.pack(kind);
        out.pack(reason);
    }
    return std::string(buffer.data(), buffer.size());
}

}  // namespace

JoinPoint::~JoinPoint() {
    // The last words to the workers ("retire") must leave before the socket goes; a worker that
    // is gone by then does not hold the close up for longer than this.
    try {
        router.set(zmq::sockopt::linger, 2000);
    } catch (const zmq::error_t&) {
    }
}

std::string PoolCore::endpoint() const { return join_ ? join_->endpoint : std::string(); }

void PoolCore::open_join_point(const PoolSettings& settings) {
    if (settings.heartbeat.count() <= 0 || settings.heartbeat_timeout.count() <= 0) {
        throw ValueError("a pool's heartbeat and heartbeat_timeout must be positive");
    }
    auto point = std::make_unique<JoinPoint>();
    point->heartbeat = settings.heartbeat;
    point->zap = transport::Authenticator::of(point->context);
    const int timeout_ms = static_cast<int>(settings.heartbeat_timeout.count());
    point->router = transport::open_socket(
        point->context, zmq::socket_type::router,
        transport::SocketOptions{.max_message = static_cast<std::int64_t>(kMaxPoolMessage),
                                 .router_mandatory = true,
                                 .heartbeat_ivl_ms = static_cast<int>(settings.heartbeat.count()),
                                 .heartbeat_timeout_ms = timeout_ms,
                                 .heartbeat_ttl_ms = timeout_ms});
    const Authkey key = settings.authkey ? *settings.authkey : current_authkey();
    transport::apply_server_security(point->router, transport::TcpSecurity::curve(key), *point->zap);
    try {
        point->router.bind(settings.bind);
    } catch (const zmq::error_t& e) {
        throw ValueError("the pool cannot bind " + settings.bind + ": " + e.what());
    }
    point->endpoint = point->router.get(zmq::sockopt::last_endpoint);
    point->zap->set_refusal_handler([endpoint = point->endpoint](const transport::Refusal& refusal) {
        log_warning("pool at " + endpoint + ": " + transport::describe(refusal));
    });
    join_ = std::move(point);
    log_info("pool: workers may join at " + join_->endpoint);
}

int PoolCore::join_point_fd() const { return join_->router.get(zmq::sockopt::fd); }

bool PoolCore::join_point_readable() { return (join_->router.get(zmq::sockopt::events) & ZMQ_POLLIN) != 0; }

void PoolCore::send_join_control(const std::string& routing_id, int kind, const std::string& reason) {
    const std::string message = packed_control(kind, reason);
    try {
        (void)transport::send_message(join_->router, {zmq::buffer(routing_id), zmq::buffer(message)});
    } catch (const zmq::error_t&) {
        // Its connection is gone: nothing to tell.
    }
}

bool PoolCore::send_to_joined(Worker& w, const char* data, std::size_t size) {
    bool sent = false;
    try {
        sent =
            transport::send_message(join_->router, {zmq::buffer(w.joined->routing_id), zmq::const_buffer(data, size)});
    } catch (const zmq::error_t&) {
        sent = false;
    }
    return sent;
}

bool PoolCore::serve_join_point() {
    bool any = false;
    std::vector<zmq::message_t> frames;
    for (;;) {
        frames.clear();
        // Two frames: the routing id and one message. More is a peer not speaking the protocol.
        zmq::message_t part;
        bool more = true;
        while (more) {
            zmq::recv_result_t got;
            try {
                got = join_->router.recv(part, zmq::recv_flags::dontwait);
            } catch (const zmq::error_t& e) {
                if (e.num() == EINTR) continue;
                throw;
            }
            if (!got) {
                if (frames.empty()) return any;
                continue;  // the rest of a multipart message is always there
            }
            more = part.more();
            if (frames.size() < 3) frames.push_back(std::move(part));
        }
        any = true;
        // Looked up only when a log or a new worker needs it: it costs a search on every message.
        const auto peer_address_of = [](zmq::message_t& frame) -> std::string {
            try {
                return frame.gets("Peer-Address");
            } catch (const zmq::error_t&) {
                return "unknown address";
            }
        };
        const std::string routing_id = frames[0].to_string();
        auto it = std::find_if(workers_.begin(), workers_.end(), [&](const std::unique_ptr<Worker>& w) {
            return w->joined && !w->joined->gone && w->joined->routing_id == routing_id;
        });
        if (frames.size() != 2) {
            log_warning("pool at " + join_->endpoint + ": dropped joined peer " + peer_address_of(frames.back()) +
                        ": a message of " + std::to_string(frames.size()) + " or more frames");
            if (it != workers_.end()) joined_lost(**it, "sent a malformed message", true);
            continue;
        }
        const zmq::message_t& body = frames[1];
        if (it == workers_.end()) {
            // A new peer must say hello; any other message comes from a connection this pool no
            // longer knows (its worker was declared lost): it is dropped, never delivered twice.
            int kind = -1;
            try {
                transport::Decoded decoded = transport::decode(static_cast<const char*>(body.data()), body.size());
                const msgpack::object& message = decoded.get();
                if (message.type == msgpack::type::ARRAY && message.via.array.size >= 1) {
                    kind = transport::convert<int>(message.via.array.ptr[0]);
                    if (kind == kJoinHello && message.via.array.size == 2) {
                        admit_joined(routing_id, message.via.array.ptr[1], peer_address_of(frames[1]));
                        continue;
                    }
                    if (kind == kJoinStatus && message.via.array.size == 1) {
                        answer_status(routing_id);
                        continue;
                    }
                }
            } catch (const ProcessError& e) {
                log_warning("pool at " + join_->endpoint + ": refused peer " + peer_address_of(frames[1]) +
                            ": a malformed hello (" + e.what() + ")");
                send_join_control(routing_id, kJoinRefused, "malformed hello");
                continue;
            }
            send_join_control(routing_id, kJoinAgain);
            continue;
        }
        Worker& w = **it;
        if (!handle_message(w, static_cast<const char*>(body.data()), body.size()) && !w.joined->gone) {
            std::string why = "broke the protocol";
            try {
                if (w.dropped) std::rethrow_exception(w.dropped);
            } catch (const std::exception& e) {
                why = e.what();
            }
            joined_lost(w, why, true);
        }
    }
}

// zmp-status across hosts: the same answer as this process's status server gives
// (pool/status_server.hpp), for this pool alone, read on the dispatcher's own thread.
void PoolCore::answer_status(const std::string& routing_id) {
    msgpack::sbuffer buffer;
    msgpack::packer<msgpack::sbuffer> out(buffer);
    out.pack_array(2);
    out.pack(static_cast<int>(kJoinStatus));
    const std::string process = pack_process_status({pack_status()});
    buffer.write(process.data(), process.size());
    try {
        (void)transport::send_message(join_->router,
                                      {zmq::buffer(routing_id), zmq::const_buffer(buffer.data(), buffer.size())});
    } catch (const zmq::error_t&) {
        // It hung up meanwhile: nobody to answer.
    }
}

void PoolCore::admit_joined(const std::string& routing_id, const msgpack::object& hello_object,
                            const std::string& peer) {
    JoinHello hello;
    try {
        hello = transport::convert<JoinHello>(hello_object);
    } catch (const ProcessError& e) {
        log_warning("pool at " + join_->endpoint + ": refused peer " + peer + ": a malformed hello (" + e.what() + ")");
        send_join_control(routing_id, kJoinRefused, "malformed hello");
        return;
    }
    if (init_fds_) {
        // Connections among the initargs are descriptors of this host: they cannot travel.
        const std::string why = "the pool's initializer takes Connections, which cannot reach a worker on another host";
        log_warning("pool at " + join_->endpoint + ": refused worker " + hello.name + " from " + peer + ": " + why);
        send_join_control(routing_id, kJoinRefused, why);
        return;
    }
    auto worker = std::make_unique<Worker>();
    worker->name = (hello.name.empty() ? "JoinedPoolWorker-" + std::to_string(++join_->joined_started) : hello.name);
    worker->joined = std::make_unique<JoinedPeer>();
    worker->joined->routing_id = routing_id;
    worker->joined->host = hello.host;
    worker->joined->address = peer;
    worker->joined->pid = hello.pid;
    worker->joined->same_build = hello.build_id == this_build_id();
    msgpack::sbuffer buffer;
    msgpack::packer<msgpack::sbuffer> out(buffer);
    out.pack_array(2);
    out.pack(static_cast<int>(kJoinWelcome));
    out.pack(JoinWelcome{init_, this_build_id()});
    bool sent = false;
    try {
        sent = transport::send_message(join_->router,
                                       {zmq::buffer(routing_id), zmq::const_buffer(buffer.data(), buffer.size())});
    } catch (const zmq::error_t&) {
    }
    if (!sent) return;  // gone already
    log_info("pool at " + join_->endpoint + ": worker " + worker->name + " (pid " + std::to_string(hello.pid) + " on " +
             hello.host + ", " + peer + ") joined" +
             (worker->joined->same_build ? "" : "; it runs another build: tasks reach it by registered name only"));
    workers_.push_back(std::move(worker));
    joined_count_.fetch_add(1, std::memory_order_relaxed);
}

int PoolCore::ping_joined() {
    if (!join_) return -1;
    const auto now = std::chrono::steady_clock::now();
    if (now >= join_->next_ping) {
        join_->next_ping = now + join_->heartbeat;
        const std::string ping = packed_control(kJoinPing, {});
        for (auto& w : workers_) {
            if (!w->joined || w->joined->gone) continue;
            // ROUTER_MANDATORY: a peer whose connection the heartbeats closed cannot be routed to.
            bool sent = false;
            try {
                sent = transport::send_message(join_->router, {zmq::buffer(w->joined->routing_id), zmq::buffer(ping)});
            } catch (const zmq::error_t&) {
            }
            if (!sent)
                joined_lost(*w, "was lost (its connection closed, or its host stopped answering heartbeats)", false);
        }
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(join_->next_ping - now).count();
    return static_cast<int>(std::max<std::int64_t>(left, 1));
}

std::exception_ptr PoolCore::cannot_run_joined(const Worker& w, std::uint64_t id) const {
    const Task& task = tasks_.at(id);  // pump() keeps tasks with Connections from joined workers
    const FunctionId& function = function_ids_.at(task.job->slot);
    if (!w.joined->same_build && function.name.empty()) {
        return std::make_exception_ptr(
            ValueError("worker " + w.name + " on host " + w.joined->host +
                       " runs another build, and this task's function has no registered name: register it with "
                       "ZMP_TASK(name, fn) in both programs"));
    }
    return nullptr;
}

void PoolCore::joined_lost(Worker& w, const std::string& how, bool tell_peer, bool first_was_running) {
    if (w.joined->gone) return;
    w.joined->gone = true;
    joined_count_.fetch_sub(1, std::memory_order_relaxed);
    if (tell_peer) send_join_control(w.joined->routing_id, kJoinRefused, how);
    log_warning("pool at " + join_->endpoint + ": joined worker " + w.name + " (pid " + std::to_string(w.joined->pid) +
                " on " + w.joined->host + ", " + w.joined->address + ") " + how);
    std::deque<std::uint64_t> lost;
    lost.swap(w.in_flight);
    w.in_flight_items = 0;
    const std::uint64_t running =
        w.dropped ? w.running_when_dropped : (lost.empty() || !first_was_running ? 0 : lost.front());
    reclaim_tasks(lost, running, w.dropped,
                  std::make_exception_ptr(
                      WorkerLost(w.name, static_cast<int>(w.joined->pid), "on host " + w.joined->host + " " + how)),
                  w.name);
}

void PoolCore::retire_joined(Worker& w) {
    send_join_control(w.joined->routing_id, w.renew ? kJoinRenew : kJoinRetire);
    if (w.renew) {
        log_info("pool at " + join_->endpoint + ": joined worker " + w.name + " (pid " + std::to_string(w.joined->pid) +
                 " on " + w.joined->host + ") ran its " + std::to_string(w.assigned) +
                 " tasks (maxtasksperchild): a fresh process takes its place");
    }
    w.joined->gone = true;
    joined_count_.fetch_sub(1, std::memory_order_relaxed);
}

void PoolCore::sweep_joined() {
    std::erase_if(workers_, [](const std::unique_ptr<Worker>& w) { return w->joined && w->joined->gone; });
}

}  // namespace zmp::detail
