#pragma once
// Python's multiprocessing.connection: Listener, Client and wait().
//
// A Listener serves an address; each Client that connects to it becomes, on both sides, a
// zmp::Connection — the same type a Pipe gives, with the same send/recv/send_bytes/recv_bytes/
// poll/fileno/close and the same EOF rule (recv raises EOFError once the other side closed or is
// gone and nothing is left). Addresses:
// - "tcp://HOST:PORT" (port 0 or "*": one the system picks; address() then says which);
// - "ipc:///path/to/socket", or a bare path "/path/to/socket" (a Unix socket on this host).
//
// Authentication is CURVE (ZeroMQ's elliptic-curve handshake) with keys derived from the authkey,
// the same derivation as zmp::serve and the pool's workers (zmp/transport/security.hpp) — not
// Python's HMAC challenge. Why: CURVE also encrypts every message, where Python's challenge only
// proves the key once and then sends pickles in clear text; and zmp already has one audited
// derivation of keys from the authkey, which every tcp endpoint of zmp uses. The price: a zmp
// Listener does not talk to Python's Client, nor the reverse (neither would a C++ value and a
// pickle). Both sides always authenticate: without an authkey argument they use this run's key
// (current_authkey()), which every process of the run shares, as Python's Manager does.
// A Client with another key raises AuthenticationError at once (one or two handshakes, not a
// timeout); the Listener reports the refused peer on stderr and goes on listening. Bytes that are
// not a ZeroMQ handshake at the Listener's port are refused the same way.
//
// What differs from a Pipe's Connection: nothing in the API; underneath, messages go through a
// ZeroMQ socket run by a thread of this process (one per Listener, one per Client; docs/design.md,
// "Listener and Client", says why). Consequences:
// - a Connection inside a message does not travel over it (its descriptor cannot cross a
//   network): it arrives as a ProtocolError at the receiver;
// - a peer that dies is seen as EOF within a second on one host, within kPeerDeathBound (4.5 s)
//   when its host vanishes (ZMTP heartbeats); any break of the underlying tcp connection is EOF
//   (there is no transparent reconnection: a Connection is a stream);
// - what a peer sends and this side has not yet received waits in this process's memory (no
//   flow control back to the sender beyond ZeroMQ's).
// The thread serving accepted Connections outlives the Listener's close() until they are closed,
// as Python's accepted connections outlive their Listener.
//
//     zmp::Listener listener("tcp://127.0.0.1:6000", key);          // the server
//     zmp::Connection conn = listener.accept();  conn.send(std::string("hello"));
//     zmp::Connection c = zmp::Client("tcp://127.0.0.1:6000", key);  // the client
//     std::string s = c.recv<std::string>();
//
//     // wait() on any mix of Connections and process sentinels:
//     for (auto& ready : zmp::wait({conn, process.sentinel()}, zmp::Seconds(5))) ...

#include <chrono>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "zmp/authkey.hpp"
#include "zmp/pipe.hpp"
#include "zmp/timeout.hpp"

namespace zmp {

/// How long a Connection over a Listener/Client takes at most to see EOF when the peer's host
/// vanishes (ZMTP heartbeats every 1 s, a connection silent 3 s after a heartbeat is closed,
/// probed every 0.5 s). A peer process that dies on a reachable host is seen within ~0.5 s.
inline constexpr std::chrono::milliseconds kPeerDeathBound{4500};

namespace detail {
struct ListenerState;
}

class Listener {
public:
    /// Binds `address` ("tcp://host:port", "ipc:///path" or "/path") and starts listening, with
    /// CURVE keys derived from `authkey` (or from current_authkey()).
    /// Errors: ValueError for an address of another kind; OSError if the address is in use
    /// (code EADDRINUSE, for an ipc path too: a live listener's path is never taken over) or
    /// cannot be bound. Threading: every member may be called from any thread; close() wakes a
    /// thread blocked in accept().
    explicit Listener(const std::string& address);
    Listener(const std::string& address, const Authkey& authkey);
    /// Closes the Listener (not the Connections it accepted).
    ~Listener();
    Listener(Listener&&) noexcept;
    Listener& operator=(Listener&&) noexcept;
    Listener(const Listener&) = delete;
    Listener& operator=(const Listener&) = delete;

    /// Waits for the next Client and returns its Connection. A Client that connected and went
    /// away before accept() is still accepted: what it sent is there, then EOF.
    /// Errors: OSError("listener is closed") after close(), also for a thread blocked here.
    Connection accept();
    /// As accept(), but gives up after `timeout` (nullopt then; zmp::forever: no limit).
    std::optional<Connection> accept(Timeout timeout);

    /// Stops listening: Clients are refused from now on (OSError ECONNREFUSED), Connections not
    /// yet accepted are closed, an ipc path is removed at once. Accepted Connections keep working;
    /// a tcp port is released when the last of them has ended (ZeroMQ closes them together).
    /// Idempotent. In a forked child it only closes the child's copy.
    void close();
    bool closed() const;

    /// The address bound, with the port the system picked: "tcp://127.0.0.1:41234",
    /// "ipc:///tmp/x.sock". Stays readable after close().
    std::string address() const;
    /// The peer address of the last Connection accept() returned ("10.0.0.2" for tcp, "" for
    /// ipc), nullopt before the first.
    std::optional<std::string> last_accepted() const;

private:
    std::shared_ptr<detail::ListenerState> state_;
};

/// Connects to the Listener at `address` and returns the Connection (readable and writable).
/// Retries while nobody listens there yet, for up to `timeout`.
/// Errors: AuthenticationError if the Listener holds another authkey (at once, not after the
/// timeout); OSError with code ECONNREFUSED if no Listener answered within `timeout`;
/// ValueError for an address of another kind. Threading: any thread.
///
///     zmp::Connection conn = zmp::Client("tcp://head:6000", zmp::read_authkey_file("key"));
Connection Client(const std::string& address, const Authkey& authkey,
                  std::chrono::milliseconds timeout = std::chrono::seconds(10));
Connection Client(const std::string& address, std::chrono::milliseconds timeout = std::chrono::seconds(10));

/// What wait() watches: a Connection (of a Pipe, a Listener or a Client), or a descriptor that is
/// ready when it polls readable — a Process's sentinel() (ready once the process ended), or any
/// other descriptor, as Python's wait() takes sockets and integers.
using Waitable = std::variant<Connection, int>;

/// Python's multiprocessing.connection.wait: waits until at least one of `objects` is ready, or
/// `timeout` passes (zmp::forever: no limit; zero or negative: do not wait), and returns the ready
/// ones, in the order given ({} on timeout). A Connection is ready when recv() would not block: a
/// message is waiting, or EOF. Errors: OSError for a closed Connection or a descriptor poll()
/// rejects. Threading: any thread; the objects are only looked at, never received from.
///
///     auto ready = zmp::wait({reader_a, reader_b, p.sentinel()}, zmp::Seconds(1));
std::vector<Waitable> wait(const std::vector<Waitable>& objects, Timeout timeout = forever);
std::vector<Waitable> wait(std::initializer_list<Waitable> objects, Timeout timeout = forever);
/// The same for a list of Connections only (no std::get needed on what it returns).
std::vector<Connection> wait(const std::vector<Connection>& connections, Timeout timeout = forever);

}  // namespace zmp
