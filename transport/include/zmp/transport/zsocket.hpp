#pragma once
// ZeroMQ helpers shared by every zmp socket: one place that sets the options every socket must
// have (linger, maximum message size, high-water marks), checks ipc paths, and retries EINTR.
// The context itself belongs to the per-process runtime (core), which knows about fork().

#include <zmq.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace zmp::transport {

/// Largest frame a zmp socket accepts unless configured otherwise (ZMQ_MAXMSGSIZE): 256 MiB.
inline constexpr std::int64_t kDefaultMaxMessage = std::int64_t{256} << 20;
/// Longest path an ipc endpoint may have (sun_path holds 108 bytes with the terminating NUL).
inline constexpr std::size_t kMaxIpcPath = 107;

struct SocketOptions {
    int linger_ms = 0;  ///< zmp never relies on linger: data that matters is acknowledged
    std::int64_t max_message = kDefaultMaxMessage;
    int send_hwm = 0;  ///< 0 = unlimited; credits bound zmp's queues, not HWMs
    int recv_hwm = 0;
    int reconnect_ivl_ms = 10;      ///< connect-before-bind retries quickly
    std::string routing_id;         ///< empty: let ZeroMQ choose
    bool router_mandatory = false;  ///< ROUTER: unroutable sends fail instead of vanishing
    // ZMTP heartbeats, for tcp peers on other hosts: they find a connection whose peer vanished
    // (power cut, cable pulled: no FIN, no RST) and close it; the socket's monitor then reports
    // DISCONNECTED and a connecting socket reconnects. They run in ZeroMQ's I/O thread, so they
    // say nothing about a peer stuck in its own code. All in milliseconds; 0 = off / default.
    int heartbeat_ivl_ms = 0;      ///< send a PING after this long without sending anything; 0 = no heartbeats
    int heartbeat_timeout_ms = 0;  ///< close when nothing arrives this long after a PING; 0 = heartbeat_ivl_ms
    /// Asks the peer to close the connection when it hears nothing from us for this long (the
    /// wire carries deciseconds: rounded down to 100 ms, at most 6553599; 0 = do not ask).
    int heartbeat_ttl_ms = 0;
};

/// Makes a socket of `type` with `options` applied. Throws ValueError for a negative or
/// out-of-range heartbeat setting, OSError on failure.
zmq::socket_t open_socket(zmq::context_t& context, zmq::socket_type type, const SocketOptions& options = {});

/// "ipc://<dir>/<name>", or ValueError if the path does not fit in sun_path.
std::string ipc_endpoint(std::string_view dir, std::string_view name);

/// Receives one multipart message (at most `max_frames` frames; more is a ProtocolError after
/// the rest is drained). Waits up to `timeout` (nullopt: for ever; zero: do not wait). Returns
/// false on timeout. EINTR is retried within the deadline.
bool recv_message(zmq::socket_ref socket, std::vector<zmq::message_t>& frames, std::size_t max_frames,
                  std::optional<std::chrono::milliseconds> timeout = std::nullopt);

/// Sends `frames` as one multipart message, blocking (EINTR retried). Returns false only for a
/// ROUTER_MANDATORY peer that is not (or no longer) connected.
bool send_message(zmq::socket_ref socket, std::vector<zmq::const_buffer> frames);
/// The same for frames already made (e.g. by owned_frame): they are sent without a copy.
bool send_message(zmq::socket_ref socket, std::vector<zmq::message_t>& frames);
/// A frame that takes over `bytes` instead of copying them.
zmq::message_t owned_frame(std::string&& bytes);

/// Waits until `socket` is readable; false on timeout (nullopt: for ever). EINTR retried.
bool wait_readable(zmq::socket_ref socket, std::optional<std::chrono::milliseconds> timeout);

}  // namespace zmp::transport
