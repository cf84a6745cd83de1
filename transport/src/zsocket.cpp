#include "zmp/transport/zsocket.hpp"

#include <cerrno>

#include "zmp/detail/deadline.hpp"
#include "zmp/errors.hpp"

namespace zmp::transport {

zmq::socket_t open_socket(zmq::context_t& context, zmq::socket_type type, const SocketOptions& options) {
    try {
        zmq::socket_t socket(context, type);
        socket.set(zmq::sockopt::linger, options.linger_ms);
        socket.set(zmq::sockopt::maxmsgsize, options.max_message);
        socket.set(zmq::sockopt::sndhwm, options.send_hwm);
        socket.set(zmq::sockopt::rcvhwm, options.recv_hwm);
        socket.set(zmq::sockopt::reconnect_ivl, options.reconnect_ivl_ms);
        if (!options.routing_id.empty()) socket.set(zmq::sockopt::routing_id, options.routing_id);
        if (options.router_mandatory) socket.set(zmq::sockopt::router_mandatory, 1);
        return socket;
    } catch (const zmq::error_t& e) {
        throw_os_error("zmq socket", e.num());
    }
}

std::string ipc_endpoint(std::string_view dir, std::string_view name) {
    std::string path = std::string(dir) + "/" + std::string(name);
    if (path.size() > kMaxIpcPath) {
        throw ValueError("ipc path '" + path + "' is " + std::to_string(path.size()) + " bytes long; the limit is " +
                         std::to_string(kMaxIpcPath) + " (set TMPDIR to a shorter directory)");
    }
    return "ipc://" + path;
}

bool wait_readable(zmq::socket_ref socket, std::optional<std::chrono::milliseconds> timeout) {
    const auto deadline = timeout ? detail::Deadline::after(*timeout) : detail::Deadline::never();
    for (;;) {
        zmq_pollitem_t item{socket.handle(), 0, ZMQ_POLLIN, 0};
        const int rc = zmq_poll(&item, 1, deadline.poll_ms());
        if (rc > 0) return true;
        if (rc == 0 && deadline.passed()) return false;
        if (rc < 0 && zmq_errno() != EINTR) throw_os_error("zmq_poll", zmq_errno());
    }
}

bool recv_message(zmq::socket_ref socket, std::vector<zmq::message_t>& frames, std::size_t max_frames,
                  std::optional<std::chrono::milliseconds> timeout) {
    frames.clear();
    if (timeout && !wait_readable(socket, timeout)) return false;
    bool too_many = false;
    for (;;) {
        zmq::message_t frame;
        for (;;) {
            try {
                // A readable socket holds a whole multipart message, so this does not block long.
                if (socket.recv(frame, zmq::recv_flags::none)) break;
            } catch (const zmq::error_t& e) {
                if (e.num() != EINTR) throw_os_error("zmq recv", e.num());
            }
        }
        bool more = frame.more();
        if (frames.size() < max_frames)
            frames.push_back(std::move(frame));
        else
            too_many = true;
        if (!more) break;
    }
    if (too_many) throw ProtocolError("message has more than " + std::to_string(max_frames) + " frames");
    return true;
}

namespace {

// Frames are const_buffers (copied by ZeroMQ) or message_ts (handed over as they are).
template <class Frame>
bool send_frames(zmq::socket_ref socket, std::vector<Frame>& frames) {
    for (std::size_t i = 0; i < frames.size(); ++i) {
        auto flags = i + 1 < frames.size() ? zmq::send_flags::sndmore : zmq::send_flags::none;
        for (;;) {
            try {
                socket.send(frames[i], flags);
                break;
            } catch (const zmq::error_t& e) {
                if (e.num() == EINTR) continue;
                if (e.num() == EHOSTUNREACH) return false;
                throw_os_error("zmq send", e.num());
            }
        }
    }
    return true;
}

}  // namespace

bool send_message(zmq::socket_ref socket, std::vector<zmq::const_buffer> frames) { return send_frames(socket, frames); }

bool send_message(zmq::socket_ref socket, std::vector<zmq::message_t>& frames) { return send_frames(socket, frames); }

zmq::message_t owned_frame(std::string&& bytes) {
    auto* held = new std::string(std::move(bytes));
    return zmq::message_t(
        held->data(), held->size(), [](void*, void* hint) { delete static_cast<std::string*>(hint); }, held);
}

}  // namespace zmp::transport
