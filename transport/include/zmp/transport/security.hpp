#pragma once
// Security for zmp's tcp endpoints: the authkey (a 32-byte secret shared by every process of a
// deployment, kept in a file), CURVE key pairs derived from it, a ZAP handler per ZeroMQ context
// that admits only peers holding an authkey it serves, and a connect call that learns quickly
// and clearly whether the server admitted it.
//
// Every tcp endpoint uses CURVE: encrypted, and both sides prove that they hold the authkey.
// Anyone holding the authkey can be either side, as with Python's authkey. Plain tcp exists
// only when asked for by name (TcpSecurity::insecure()). ipc endpoints do not use any of this:
// they live in a private 0700 directory.
//
//     auto zap = Authenticator::of(context);                             // the server
//     apply_server_security(router, TcpSecurity::curve(key), *zap);
//     router.bind("tcp://*:5555");
//     apply_client_security(dealer, TcpSecurity::curve(key));            // a client
//     connect_and_authenticate(context, dealer, "tcp://head:5555", 1s);

#include <zmq.hpp>

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

namespace zmp::transport {

// ---------------------------------------------------------------------------------------------
// Authkeys and authkey files

inline constexpr std::size_t kAuthkeySize = 32;
/// The secret every process of a deployment shares.
using Authkey = std::array<std::uint8_t, kAuthkeySize>;

/// 32 bytes from the operating system's random generator. Throws OSError if there is none.
Authkey generate_authkey();

// An authkey file holds the key as 64 hexadecimal digits (either case), optionally followed by
// one newline ("\n" or "\r\n"), and nothing else: `cat` shows it, and it can be made with
// `(umask 077; openssl rand -hex 32 > FILE)` as well as with write_authkey_file(). Raw binary
// keys are refused (one format, readable by people). The file must be accessible by its owner
// only (mode 0600 or 0400), as ssh requires of private keys.

/// Reads the authkey in `path`. Throws, naming the file and what to do:
/// - OSError (code() = errno, ENOENT for a missing file) if it cannot be opened or read;
/// - ValueError if group or others may access it, or if it is not 64 hex digits + optional newline.
///
///     Authkey key = read_authkey_file("/etc/zmp/authkey");
Authkey read_authkey_file(const std::string& path);

/// Creates `path` with mode 0600 holding `key` as 64 hex digits and a newline, and flushes it to
/// disk. Never replaces a file: OSError with code() EEXIST if `path` exists (symbolic links
/// included); OSError for any other failure (no half-written file is left behind).
///
///     write_authkey_file("authkey", generate_authkey());
void write_authkey_file(const std::string& path, const Authkey& key);

// ---------------------------------------------------------------------------------------------
// CURVE keys

/// The two CURVE key pairs of one authkey, as the 40-character Z85 text libzmq takes.
struct CurveKeys {
    std::string server_public, server_secret;
    std::string client_public, client_secret;
};

/// Derives the server's and the client's key pairs from `key`: each pair is
/// crypto_box_seed_keypair(HMAC-SHA256(key, label)) with the labels "zmp curve server key v1" and
/// "zmp curve client key v1". Deterministic: every holder of the authkey derives the same keys,
/// and any language with HMAC-SHA256 and X25519 can too. Pure function, thread-safe.
CurveKeys derive_curve_keys(const Authkey& key);

/// How a tcp endpoint is protected: CURVE with keys derived from an authkey, or — only when the
/// caller asks for it by name — nothing at all (anyone who reaches the port is admitted, and
/// every byte travels in clear text). A copyable value; there is no default.
class TcpSecurity {
public:
    static TcpSecurity curve(const Authkey& key);
    static TcpSecurity insecure();

    bool is_insecure() const { return !keys_; }
    /// The derived keys. ValueError for an insecure one.
    const CurveKeys& keys() const;
    /// The ZAP domain a CURVE server for this authkey uses ("zmp:" + its public key in hex): it
    /// ties each server socket to the one client key it admits. ValueError for an insecure one.
    std::string zap_domain() const;

private:
    TcpSecurity() = default;
    std::optional<CurveKeys> keys_;
};

// ---------------------------------------------------------------------------------------------
// The ZAP handler

/// A peer that a server socket turned away.
struct Refusal {
    std::string peer;       ///< its IP address ("10.0.0.2"), or "unknown address" (see below)
    std::string mechanism;  ///< the security mechanism of the refused handshake: "CURVE", "NULL"...
    std::string reason;     ///< why, in words ("unknown CURVE key", ...)
};
/// One line describing `refusal`: "zmp: refused tcp peer 10.0.0.2 (CURVE): unknown CURVE key".
std::string describe(const Refusal& refusal);
using RefusalHandler = std::function<void(const Refusal&)>;

/// The ZAP handler of one ZeroMQ context (libzmq asks the handler bound at
/// inproc://zeromq.zap.01 in the socket's own context; there can be one per context). It runs on
/// a thread of its own, started by the first Authenticator::of() for that context, and:
/// - admits a CURVE client whose public key is the client key of the authkey its server socket
///   serves (each server socket names its authkey through its ZAP domain, so one process can
///   serve several authkeys, each admitting its own clients only);
/// - refuses every other request with status 400 (unknown key, a domain it does not serve, a
///   mechanism other than CURVE) and reports it to the refusal handler;
/// - also reports what libzmq refuses before ZAP is asked, on server sockets set up by
///   apply_server_security(): a handshake that does not decrypt (the peer holds another
///   authkey), a peer using another mechanism, a malformed handshake. Peers that merely hang up
///   during the handshake (port probes) are not reported.
/// The peer address of a ZAP refusal comes from libzmq and is always known. For a refusal before
/// ZAP, libzmq gives only the connection's fd, which is read when the handler sees the accept;
/// if the connection is already closed by then, the peer is "unknown address". This pairing
/// assumes the context has one I/O thread (zmp's contexts do).
///
/// Lifetime: the handler runs while a std::shared_ptr to it exists, or until stop(). Keep it as
/// long as a server socket that uses it is open: a CURVE server whose context has no ZAP handler
/// admits any client that knows its public key. The context must outlive it; terminating the
/// context while it runs makes it stop by itself.
/// fork(): a child never touches its parent's handler (it would not run there anyway): dropping
/// the last reference to it in a child leaks it instead of stopping it, and of() in a child
/// starts a new one for the child's own context.
/// Threading: every member may be called from any thread, except stop() from inside the refusal
/// handler (it would wait for its own thread).
///
///     auto zap = Authenticator::of(context);
///     zap->set_refusal_handler([](const Refusal& r) { log(describe(r)); });
class Authenticator {
public:
    /// The handler of `context`, started if it is not running. Throws OSError if it cannot bind
    /// inproc://zeromq.zap.01 (another ZAP handler, not zmp's, is bound in that context).
    static std::shared_ptr<Authenticator> of(zmq::context_t& context);

    /// Replaces where refusals go; nullptr restores the default (describe() as one line on
    /// stderr). The handler runs on the handler's thread: it must be quick and must not throw
    /// (an exception is swallowed).
    void set_refusal_handler(RefusalHandler handler);

    /// Stops the thread and closes its sockets; from then on ZAP requests in this context go
    /// unanswered and of() starts a new handler. Idempotent.
    void stop();

    ~Authenticator();
    Authenticator(const Authenticator&) = delete;
    Authenticator& operator=(const Authenticator&) = delete;

    struct State;  // private, shared with the handler's thread

private:
    explicit Authenticator(std::shared_ptr<State> state);
    std::shared_ptr<State> state_;
    friend void apply_server_security(zmq::socket_t&, const TcpSecurity&, Authenticator&);
};

// ---------------------------------------------------------------------------------------------
// Sockets

/// Makes `socket` — made by open_socket() and not yet bound — the server side of `security`:
/// for CURVE, curve_server with the derived secret key and the ZAP domain of the authkey, whose
/// client key `authenticator` then admits. In both modes it attaches the socket's monitor
/// (libzmq allows one per socket: do not call zmq_socket_monitor on it yourself) so that
/// `authenticator` reports refused handshakes. The limits open_socket() set stay as they are.
/// Throws ValueError if the socket is already bound or connected, or has no maximum message
/// size (a tcp server must have one); OSError if the handler is not running.
/// Threading: call from the thread that owns `socket`.
void apply_server_security(zmq::socket_t& socket, const TcpSecurity& security, Authenticator& authenticator);

/// Makes `socket` (before it connects) a client of `security`: for CURVE, the server's public key
/// and the client's own key pair, all derived from the authkey; for insecure, nothing (NULL
/// mechanism). Throws OSError if libzmq refuses the options. Threading: the socket's owner.
void apply_client_security(zmq::socket_t& socket, const TcpSecurity& security);

/// What connect_and_authenticate() found.
enum class Handshake {
    succeeded,  ///< the server admitted this socket; messages flow
    no_server,  ///< no tcp connection was accepted before the timeout (nothing listening yet, unreachable)
    stalled,    ///< a connection was accepted but its handshake neither succeeded nor failed in time
};

/// Connects `socket` to `endpoint` and waits, at most `timeout` (negative: zero), for the outcome
/// of the ZMTP handshake (which carries CURVE, or NULL for an insecure socket), watching the
/// socket's monitor. Returns Handshake::succeeded once the server has admitted it; no_server or
/// stalled when the timeout passes first — the expected outcome while a server is starting: try
/// again later.
/// Throws AuthenticationError, naming the endpoint and the cause, when the handshake is refused:
/// the server does not hold our authkey (it closed two handshakes in a row), its ZAP handler
/// refused our key, or one side uses CURVE and the other does not. This takes one or two
/// connection attempts (milliseconds on a LAN), not a handshake timeout. Throws ValueError for a
/// malformed endpoint, OSError for other failures.
/// After AuthenticationError the socket is closed: its credentials are of no further use, and
/// libzmq would otherwise go on retrying in the background until the socket is next used. After
/// no_server or stalled it is disconnected from `endpoint` (libzmq completes that the next time
/// the socket is used, e.g. by the next call), so the call can simply be repeated.
/// `context` must be the socket's own context (the monitor is an inproc socket). The socket must
/// not be connecting anywhere else meanwhile, and its monitor is taken for the duration of the
/// call. Threading: the socket's owner.
///
///     apply_client_security(dealer, TcpSecurity::curve(key));
///     if (connect_and_authenticate(context, dealer, "tcp://head:5555", 1s) != Handshake::succeeded) retry_later();
Handshake connect_and_authenticate(zmq::context_t& context, zmq::socket_t& socket, const std::string& endpoint,
                                   std::chrono::milliseconds timeout);

}  // namespace zmp::transport
