#include "zmp/transport/security.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sodium.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <deque>
#include <future>
#include <list>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "zmp/detail/deadline.hpp"
#include "zmp/errors.hpp"
#include "zmp/transport/wake_fd.hpp"
#include "zmp/transport/zsocket.hpp"

// What a CURVE client and server observe in libzmq 4.3.4 (socket monitor events, on loopback):
//
// (a) The client holds another authkey (wrong server key and wrong own key). The server cannot
//     open the client's HELLO: it emits HANDSHAKE_FAILED_PROTOCOL with
//     ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC and closes the connection without an ERROR command and
//     without asking ZAP. The client only sees HANDSHAKE_FAILED_NO_DETAIL (value: errno, EPIPE or
//     ECONNRESET) and DISCONNECTED, and reconnects every reconnect interval for ever.
// (b) Right server key, a client key that ZAP refuses (status 400). Both sides emit
//     HANDSHAKE_FAILED_AUTH with value 400 (the server sends an ERROR command). The client does not
//     reconnect: the failure counts as a protocol error, which ends the session.
// (c) A NULL (plain) client against a CURVE server, or the reverse. The side that reads the
//     other's greeting first emits HANDSHAKE_FAILED_PROTOCOL with
//     ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH and closes; it is a race, and the other side then
//     sees only HANDSHAKE_FAILED_NO_DETAIL (and a client reconnects), or the mismatch as well. A
//     client that saw the mismatch does not reconnect. (A NULL server with a ZAP domain set asks
//     ZAP too, with mechanism "NULL".)
// (d) Nothing listening: CONNECT_DELAYED, CLOSED, CONNECT_RETRIED, again every interval; never
//     CONNECTED.
// A raw tcp connection that is closed at once gives the server HANDSHAKE_FAILED_NO_DETAIL
// (ECONNRESET); an HTTP request gives only DISCONNECTED.
//
// Peer addresses: the ZAP request carries the peer's IP address (no port). Monitor events carry
// the listener's endpoint, not the peer's; ACCEPTED and DISCONNECTED carry the connection's fd,
// and the HANDSHAKE_FAILED_* events carry the error code instead. So a failure that never reaches
// ZAP can be tied to a peer only by calling getpeername() on the fd of the ACCEPTED event before
// libzmq closes it: in case (a) the HELLO's round trip usually leaves time for that, in case (c)
// the fd is usually closed already. With one I/O thread the events of one connection arrive in
// order: ACCEPTED(fd) ... HANDSHAKE_FAILED_* then DISCONNECTED(fd).

namespace zmp::transport {
namespace {

constexpr char kZapEndpoint[] = "inproc://zeromq.zap.01";
constexpr char kServerLabel[] = "zmp curve server key v1";
constexpr char kClientLabel[] = "zmp curve client key v1";
constexpr std::size_t kZ85KeySize = 40;
// A file larger than any valid authkey file is not read further.
constexpr std::size_t kAuthkeyFileLimit = 4096;

void init_sodium() {
    static const int rc = ::sodium_init();
    if (rc < 0) throw OSError("libsodium could not be initialised");
}

std::string to_hex(const std::uint8_t* bytes, std::size_t size) {
    std::string hex(2 * size + 1, '\0');
    ::sodium_bin2hex(hex.data(), hex.size(), bytes, size);
    hex.pop_back();
    return hex;
}

std::string z85(const std::uint8_t (&key)[crypto_box_PUBLICKEYBYTES]) {
    char text[kZ85KeySize + 1];
    if (::zmq_z85_encode(text, key, sizeof key) == nullptr) throw OSError("zmq_z85_encode failed");
    return std::string(text, kZ85KeySize);
}

std::string z85_decode(const std::string& text) {
    std::uint8_t key[32];
    if (text.size() != kZ85KeySize || ::zmq_z85_decode(key, text.c_str()) == nullptr)
        throw ValueError("'" + text + "' is not a Z85 CURVE key");
    return std::string(reinterpret_cast<const char*>(key), sizeof key);
}

void derive_pair(const Authkey& key, const char* label, std::string& public_text, std::string& secret_text) {
    static_assert(crypto_auth_hmacsha256_KEYBYTES == kAuthkeySize);
    static_assert(crypto_auth_hmacsha256_BYTES == crypto_box_SEEDBYTES);
    std::uint8_t seed[crypto_box_SEEDBYTES];
    std::uint8_t public_key[crypto_box_PUBLICKEYBYTES];
    std::uint8_t secret_key[crypto_box_SECRETKEYBYTES];
    ::crypto_auth_hmacsha256(seed, reinterpret_cast<const unsigned char*>(label), std::strlen(label), key.data());
    ::crypto_box_seed_keypair(public_key, secret_key, seed);
    public_text = z85(public_key);
    secret_text = z85(secret_key);
    ::sodium_memzero(seed, sizeof seed);
    ::sodium_memzero(secret_key, sizeof secret_key);
}

[[noreturn]] void throw_zmq(const std::string& what, const zmq::error_t& e) { throw_os_error(what, e.num()); }

std::string peer_address(int fd) {
    sockaddr_storage address{};
    socklen_t size = sizeof address;
    if (::getpeername(fd, reinterpret_cast<sockaddr*>(&address), &size) != 0) return {};
    char text[INET6_ADDRSTRLEN] = {};
    if (address.ss_family == AF_INET) {
        ::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(&address)->sin_addr, text, sizeof text);
    } else if (address.ss_family == AF_INET6) {
        ::inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(&address)->sin6_addr, text, sizeof text);
    }
    return text;
}

struct MonitorEvent {
    std::uint16_t event;
    std::uint32_t value;
};

// A monitor message is two frames: 6 bytes (event, value) and the endpoint.
std::optional<MonitorEvent> parse_event(const std::vector<zmq::message_t>& frames) {
    if (frames.size() != 2 || frames[0].size() != 6) return std::nullopt;
    MonitorEvent e;
    std::memcpy(&e.event, frames[0].data(), sizeof e.event);
    std::memcpy(&e.value, static_cast<const char*>(frames[0].data()) + sizeof e.event, sizeof e.value);
    return e;
}

std::string hex_code(std::uint32_t code) {
    char text[16];
    std::snprintf(text, sizeof text, "0x%08x", code);
    return text;
}

// Why a server refused a handshake that never reached ZAP; `mechanism` is the server's own.
std::string server_protocol_reason(std::uint32_t code, const std::string& mechanism) {
    switch (code) {
        case ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC:
            return "its CURVE handshake does not decrypt with this endpoint's key (it holds another authkey)";
        case ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
            return mechanism == "CURVE" ? "it does not use CURVE (a plain tcp peer)"
                                        : "it uses a security mechanism this plain tcp endpoint does not";
        default:
            return "malformed handshake (ZMTP protocol error " + hex_code(code) + ")";
    }
}

void default_refusal_handler(const Refusal& refusal) {
    std::string line = describe(refusal) + "\n";
    std::fputs(line.c_str(), stderr);
}

void disconnect_quietly(zmq::socket_t& socket, const std::string& endpoint) {
    try {
        socket.disconnect(endpoint);
    } catch (const zmq::error_t&) {
        // A session that a refused handshake ended is already gone (ENOENT): nothing to undo.
    }
}

// Handler objects by context, for this process. A forked child finds its parent's registry
// (whose mutex a thread that does not exist in the child may hold) and replaces it without
// touching it; the pid tells them apart, so no fork handler is needed.
struct Registry {
    explicit Registry(pid_t owner) : pid(owner) {}
    const pid_t pid;
    std::mutex mutex;
    std::map<void*, std::weak_ptr<Authenticator>> by_context;
};

Registry& registry() {
    static std::atomic<Registry*> current{nullptr};
    const pid_t self = ::getpid();
    Registry* found = current.load(std::memory_order_acquire);
    while (found == nullptr || found->pid != self) {
        auto* fresh = new Registry(self);
        if (current.compare_exchange_weak(found, fresh, std::memory_order_acq_rel)) return *fresh;
        delete fresh;  // another thread of this process installed one first; `found` is it
    }
    return *found;
}

std::atomic<unsigned long> monitor_counter{0};

std::string unique_monitor_endpoint(const char* what) {
    return "inproc://zmp-" + std::string(what) + "-" + std::to_string(::getpid()) + "-" +
           std::to_string(monitor_counter.fetch_add(1));
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Authkeys

Authkey generate_authkey() {
    init_sodium();
    Authkey key;
    ::randombytes_buf(key.data(), key.size());
    return key;
}

Authkey read_authkey_file(const std::string& path) {
    const std::string how_to_make =
        "make one with: (umask 077; openssl rand -hex 32 > " + path + "), or zmp's write_authkey_file()";
    // O_NONBLOCK: a FIFO in its place must not block the open; it is refused below.
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        int code = errno;
        std::string hint = code == ENOENT ? " (" + how_to_make + ")" : "";
        throw OSError("authkey file '" + path + "': " + std::strerror(code) + hint, code);
    }
    struct Closer {
        int fd;
        ~Closer() { ::close(fd); }
    } closer{fd};
    struct stat info {};
    if (::fstat(fd, &info) != 0) throw_os_error("authkey file '" + path + "': fstat", errno);
    if (!S_ISREG(info.st_mode)) throw ValueError("authkey file '" + path + "' is not a regular file");
    if ((info.st_mode & 077) != 0) {
        char mode[8];
        std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(info.st_mode & 07777));
        throw ValueError("authkey file '" + path + "' has mode " + mode +
                         ": group or others may access it, so the key may be known to others; run: chmod 600 " + path +
                         " (and make a new key if others may have read it)");
    }
    std::string text;
    char buffer[512];
    for (;;) {
        ssize_t n = ::read(fd, buffer, sizeof buffer);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) throw_os_error("authkey file '" + path + "': read", errno);
        if (n == 0) break;
        text.append(buffer, static_cast<std::size_t>(n));
        if (text.size() > kAuthkeyFileLimit) break;
    }
    const std::string expected = "; it must hold 64 hexadecimal digits and an optional newline (" + how_to_make + ")";
    std::size_t digits = text.size();
    if (text.ends_with("\r\n"))
        digits -= 2;
    else if (text.ends_with("\n"))
        digits -= 1;
    if (digits != 2 * kAuthkeySize) {
        std::string size = text.size() > kAuthkeyFileLimit ? "more than " + std::to_string(kAuthkeyFileLimit)
                                                           : std::to_string(text.size());
        throw ValueError("authkey file '" + path + "' holds " + size + " bytes" + expected);
    }
    Authkey key;
    std::size_t decoded = 0;
    const char* end = nullptr;
    if (::sodium_hex2bin(key.data(), key.size(), text.data(), digits, nullptr, &decoded, &end) != 0 ||
        decoded != key.size() || end != text.data() + digits) {
        std::size_t at = end != nullptr ? static_cast<std::size_t>(end - text.data()) : 0;
        throw ValueError("authkey file '" + path + "' has a character that is not a hexadecimal digit at offset " +
                         std::to_string(at) + expected);
    }
    return key;
}

void write_authkey_file(const std::string& path, const Authkey& key) {
    // O_EXCL also refuses a symbolic link, even a dangling one.
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOCTTY, 0600);
    if (fd < 0) {
        int code = errno;
        std::string why = code == EEXIST ? "it already exists and is not replaced" : std::strerror(code);
        throw OSError("cannot create authkey file '" + path + "': " + why, code);
    }
    std::string text = to_hex(key.data(), key.size()) + "\n";
    int failure = 0;
    std::string step;
    // umask cannot widen 0600 but may narrow it; the owner must be able to read the key back.
    if (::fchmod(fd, 0600) != 0) {
        failure = errno;
        step = "fchmod";
    }
    for (std::size_t written = 0; failure == 0 && written < text.size();) {
        ssize_t n = ::write(fd, text.data() + written, text.size() - written);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            failure = errno;
            step = "write";
        } else {
            written += static_cast<std::size_t>(n);
        }
    }
    if (failure == 0 && ::fsync(fd) != 0) {
        failure = errno;
        step = "fsync";
    }
    if (::close(fd) != 0 && failure == 0) {
        failure = errno;
        step = "close";
    }
    ::sodium_memzero(text.data(), text.size());
    if (failure != 0) {
        ::unlink(path.c_str());
        throw_os_error("authkey file '" + path + "': " + step, failure);
    }
}

// ---------------------------------------------------------------------------------------------
// Keys

// HMAC-SHA256 rather than keyed BLAKE2b (crypto_generichash): both are sound keyed hashes of a
// 32-byte secret, and HMAC-SHA256 is in every standard library (Python's hmac, openssl), so a
// program outside zmp can derive the same keys.
CurveKeys derive_curve_keys(const Authkey& key) {
    init_sodium();
    CurveKeys keys;
    derive_pair(key, kServerLabel, keys.server_public, keys.server_secret);
    derive_pair(key, kClientLabel, keys.client_public, keys.client_secret);
    return keys;
}

TcpSecurity TcpSecurity::curve(const Authkey& key) {
    TcpSecurity security;
    security.keys_ = derive_curve_keys(key);
    return security;
}

TcpSecurity TcpSecurity::insecure() { return TcpSecurity(); }

const CurveKeys& TcpSecurity::keys() const {
    if (!keys_) throw ValueError("an insecure (plain tcp) endpoint has no CURVE keys");
    return *keys_;
}

std::string TcpSecurity::zap_domain() const {
    std::string key = z85_decode(keys().server_public);
    return "zmp:" + to_hex(reinterpret_cast<const std::uint8_t*>(key.data()), key.size());
}

// ---------------------------------------------------------------------------------------------
// The ZAP handler

std::string describe(const Refusal& refusal) {
    return "zmp: refused tcp peer " + refusal.peer + " (" + refusal.mechanism + "): " + refusal.reason;
}

struct Authenticator::State {
    explicit State(zmq::context_t& c) : context(c) {}

    // A server socket whose monitor the handler's thread reads.
    struct WatchRequest {
        std::string endpoint;
        std::string mechanism;
        std::promise<void> connected;
    };
    struct Watch {
        zmq::socket_t events;
        std::string mechanism;
        std::map<int, std::string> peers;    // fd -> address, from ACCEPTED
        std::optional<std::string> failure;  // the connection that failed; reported at its DISCONNECTED
        bool stopped = false;
    };

    void start();
    void run(std::promise<void>& bound);
    void wake();
    void answer_zap(zmq::socket_t& zap);
    void read_events(Watch& watch);
    void report(const Refusal& refusal);
    void admit(const std::string& domain, const std::string& client_key);
    void watch(zmq::socket_t& socket, const std::string& mechanism);
    void stop();

    zmq::context_t& context;
    const pid_t owner_pid = ::getpid();
    // Made by start() and kept until the State goes, so that a wake() racing with stop() still
    // writes to a live eventfd.
    std::optional<WakeFd> wake_fd;
    std::thread thread;
    std::mutex stop_mutex;  // one stop() at a time

    std::mutex mutex;                             // guards what follows
    std::map<std::string, std::string> admitted;  // ZAP domain -> the client public key (32 bytes) it admits
    RefusalHandler handler;
    std::deque<WatchRequest> requests;
    bool stop_requested = false;
    bool running = false;
};

void Authenticator::State::start() {
    wake_fd.emplace();
    std::promise<void> bound;
    auto ready = bound.get_future();
    running = true;
    thread = std::thread([this, &bound] { run(bound); });
    try {
        ready.get();
    } catch (...) {
        thread.join();
        throw;
    }
}

void Authenticator::State::run(std::promise<void>& bound) {
    std::optional<zmq::socket_t> zap;
    try {
        zap.emplace(context, zmq::socket_type::rep);
        zap->set(zmq::sockopt::linger, 0);
        // A handler of this context that is stopping may still hold the name for a moment.
        for (int attempt = 0;; ++attempt) {
            try {
                zap->bind(kZapEndpoint);
                break;
            } catch (const zmq::error_t& e) {
                if (e.num() != EADDRINUSE || attempt == 100) throw;
                std::this_thread::sleep_for(std::chrono::milliseconds(10));
            }
        }
    } catch (const zmq::error_t& e) {
        std::string why = e.num() == EADDRINUSE ? "another ZAP handler is bound in this ZeroMQ context" : e.what();
        {
            std::lock_guard lock(mutex);
            running = false;
        }
        bound.set_exception(std::make_exception_ptr(
            OSError("cannot start zmp's ZAP handler at " + std::string(kZapEndpoint) + ": " + why, e.num())));
        return;
    }
    bound.set_value();

    std::list<Watch> watches;
    std::vector<zmq_pollitem_t> items;
    for (;;) {
        items.assign({{zap->handle(), 0, ZMQ_POLLIN, 0}, {nullptr, wake_fd->fd(), ZMQ_POLLIN, 0}});
        for (auto& w : watches) items.push_back({w.events.handle(), 0, ZMQ_POLLIN, 0});
        if (::zmq_poll(items.data(), static_cast<int>(items.size()), -1) < 0) {
            if (::zmq_errno() == EINTR) continue;
            break;  // ETERM: the context is being terminated; close everything so that it can end
        }
        try {
            if (items[1].revents & ZMQ_POLLIN) {
                wake_fd->drain();
                std::deque<WatchRequest> taken;
                {
                    std::lock_guard lock(mutex);
                    if (stop_requested) break;
                    taken.swap(requests);
                }
                for (auto& request : taken) {
                    try {
                        Watch w{zmq::socket_t(context, zmq::socket_type::pair), request.mechanism, {}, {}};
                        w.events.set(zmq::sockopt::linger, 0);
                        w.events.connect(request.endpoint);
                        watches.push_back(std::move(w));
                        request.connected.set_value();
                    } catch (const zmq::error_t& e) {
                        request.connected.set_exception(std::make_exception_ptr(
                            OSError("cannot watch a server socket: " + std::string(e.what()), e.num())));
                    }
                }
            }
            if (items[0].revents & ZMQ_POLLIN) answer_zap(*zap);
            // Only the watches that were polled: those added just now come after them.
            auto watch_it = watches.begin();
            for (std::size_t i = 2; i < items.size(); ++i, ++watch_it) {
                if (items[i].revents & ZMQ_POLLIN) read_events(*watch_it);
            }
            watches.remove_if([](const Watch& w) { return w.stopped; });
        } catch (const zmq::error_t& e) {
            if (e.num() == ETERM) break;
            std::fprintf(stderr, "zmp: ZAP handler: %s\n", e.what());
        } catch (const std::exception& e) {
            std::fprintf(stderr, "zmp: ZAP handler: %s\n", e.what());
        }
    }
    try {
        zap->unbind(kZapEndpoint);  // frees the name now, for a handler started after this one
    } catch (const zmq::error_t&) {
    }
    zap.reset();
    watches.clear();
    std::lock_guard lock(mutex);
    running = false;
    for (auto& request : requests)
        request.connected.set_exception(std::make_exception_ptr(OSError("zmp's ZAP handler has stopped")));
    requests.clear();
}

void Authenticator::State::wake() { wake_fd->notify(); }

// One ZAP request (RFC 27): version, request id, domain, address, routing id, mechanism,
// credentials. Always answered, so that no handshake waits for the handshake timeout.
void Authenticator::State::answer_zap(zmq::socket_t& zap) {
    std::vector<zmq::message_t> frames;
    bool well_formed = true;
    try {
        if (!recv_message(zap, frames, 16, std::chrono::milliseconds(0))) return;
    } catch (const ProtocolError&) {
        well_formed = false;  // more frames than any mechanism sends; the reply goes out anyway
    }
    auto text = [&](std::size_t i) { return i < frames.size() ? frames[i].to_string() : std::string(); };
    Refusal refusal{text(3).empty() ? "unknown address" : text(3), text(5), ""};
    const std::string domain = text(2);
    if (!well_formed || frames.size() < 6 || text(0) != "1.0") {
        refusal.reason = "malformed ZAP request";
    } else if (refusal.mechanism != "CURVE") {
        refusal.reason = "mechanism " + refusal.mechanism + " is not admitted (zmp's tcp endpoints use CURVE)";
    } else if (frames.size() != 7 || frames[6].size() != crypto_box_PUBLICKEYBYTES) {
        refusal.reason = "malformed CURVE credentials";
    } else {
        std::lock_guard lock(mutex);
        auto it = admitted.find(domain);
        if (it == admitted.end())
            refusal.reason = "no authkey is served under ZAP domain '" + domain + "'";
        else if (it->second != text(6))
            refusal.reason = "unknown CURVE key";
    }
    const bool admit = refusal.reason.empty();
    const std::string status = admit ? "200" : "400";
    const std::string status_text = admit ? "OK" : refusal.reason;
    const std::string user_id = admit ? domain : "";
    const std::string request_id = text(1);
    send_message(zap, {zmq::buffer(std::string_view("1.0")), zmq::buffer(request_id), zmq::buffer(status),
                       zmq::buffer(status_text), zmq::buffer(user_id), zmq::const_buffer()});
    if (!admit) report(refusal);
}

void Authenticator::State::read_events(Watch& watch) {
    std::vector<zmq::message_t> frames;
    while (recv_message(watch.events, frames, 2, std::chrono::milliseconds(0))) {
        auto event = parse_event(frames);
        if (!event) continue;
        switch (event->event) {
            case ZMQ_EVENT_ACCEPTED:
                watch.peers[static_cast<int>(event->value)] = peer_address(static_cast<int>(event->value));
                break;
            case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
                watch.failure = server_protocol_reason(event->value, watch.mechanism);
                break;
            case ZMQ_EVENT_DISCONNECTED: {
                auto it = watch.peers.find(static_cast<int>(event->value));
                if (watch.failure) {
                    std::string peer = it != watch.peers.end() && !it->second.empty() ? it->second : "unknown address";
                    report({peer, watch.mechanism, *watch.failure});
                    watch.failure.reset();
                }
                if (it != watch.peers.end()) watch.peers.erase(it);
                break;
            }
            case ZMQ_EVENT_MONITOR_STOPPED:  // the server socket was closed
                watch.stopped = true;
                return;
            default:
                break;
        }
    }
}

void Authenticator::State::report(const Refusal& refusal) {
    RefusalHandler call;
    {
        std::lock_guard lock(mutex);
        call = handler;
    }
    try {
        if (call)
            call(refusal);
        else
            default_refusal_handler(refusal);
    } catch (...) {
        // A refusal handler must not throw; one that does loses its report, not the handler thread.
    }
}

void Authenticator::State::admit(const std::string& domain, const std::string& client_key) {
    std::lock_guard lock(mutex);
    admitted[domain] = client_key;
}

void Authenticator::State::watch(zmq::socket_t& socket, const std::string& mechanism) {
    const std::string endpoint = unique_monitor_endpoint("handshakes");
    const int events =
        ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_DISCONNECTED | ZMQ_EVENT_MONITOR_STOPPED;
    std::future<void> connected;
    {
        std::lock_guard lock(mutex);
        if (!running) throw OSError("zmp's ZAP handler has stopped; get a running one with Authenticator::of()");
        if (::zmq_socket_monitor(socket.handle(), endpoint.c_str(), events) != 0)
            throw_os_error("zmq_socket_monitor", ::zmq_errno());
        requests.push_back({endpoint, mechanism, {}});
        connected = requests.back().connected.get_future();
    }
    wake();
    try {
        connected.get();
    } catch (...) {
        ::zmq_socket_monitor(socket.handle(), nullptr, 0);
        throw;
    }
}

void Authenticator::State::stop() {
    std::lock_guard serial(stop_mutex);
    if (!thread.joinable()) return;
    {
        std::lock_guard lock(mutex);
        stop_requested = true;
    }
    wake();
    thread.join();
}

Authenticator::Authenticator(std::shared_ptr<State> state) : state_(std::move(state)) {}

Authenticator::~Authenticator() {
    if (state_->owner_pid != ::getpid()) {
        // A forked child: the thread does not exist here and the parent's context must not be
        // touched. Leak the state, joinable std::thread included (destroying it would abort).
        new std::shared_ptr<State>(std::move(state_));
        return;
    }
    state_->stop();
}

std::shared_ptr<Authenticator> Authenticator::of(zmq::context_t& context) {
    Registry& r = registry();
    std::lock_guard lock(r.mutex);
    std::erase_if(r.by_context, [](const auto& entry) { return entry.second.expired(); });
    auto& slot = r.by_context[context.handle()];
    if (auto running = slot.lock()) {
        std::lock_guard state_lock(running->state_->mutex);
        if (running->state_->running) return running;
    }
    auto state = std::make_shared<State>(context);
    state->start();
    std::shared_ptr<Authenticator> handler(new Authenticator(std::move(state)));
    slot = handler;
    return handler;
}

void Authenticator::set_refusal_handler(RefusalHandler handler) {
    std::lock_guard lock(state_->mutex);
    state_->handler = std::move(handler);
}

void Authenticator::stop() {
    if (state_->owner_pid == ::getpid()) state_->stop();
}

// ---------------------------------------------------------------------------------------------
// Sockets

void apply_server_security(zmq::socket_t& socket, const TcpSecurity& security, Authenticator& authenticator) {
    try {
        std::string bound = socket.get(zmq::sockopt::last_endpoint);
        if (!bound.empty())
            throw ValueError("apply_server_security: the socket is already bound or connected to " + bound +
                             "; apply security before bind()");
        if (socket.get(zmq::sockopt::maxmsgsize) < 0)
            throw ValueError(
                "apply_server_security: the socket has no maximum message size; open it with open_socket()");
        std::string mechanism = "NULL";
        if (!security.is_insecure()) {
            const CurveKeys& keys = security.keys();
            const std::string domain = security.zap_domain();
            authenticator.state_->admit(domain, z85_decode(keys.client_public));
            socket.set(zmq::sockopt::curve_server, 1);
            socket.set(zmq::sockopt::curve_secretkey, keys.server_secret);
            socket.set(zmq::sockopt::zap_domain, domain);
            mechanism = "CURVE";
        }
        authenticator.state_->watch(socket, mechanism);
    } catch (const zmq::error_t& e) {
        throw_zmq("apply_server_security", e);
    }
}

void apply_client_security(zmq::socket_t& socket, const TcpSecurity& security) {
    if (security.is_insecure()) return;
    const CurveKeys& keys = security.keys();
    try {
        socket.set(zmq::sockopt::curve_serverkey, keys.server_public);
        socket.set(zmq::sockopt::curve_publickey, keys.client_public);
        socket.set(zmq::sockopt::curve_secretkey, keys.client_secret);
    } catch (const zmq::error_t& e) {
        throw_zmq("apply_client_security", e);
    }
}

Handshake connect_and_authenticate(zmq::context_t& context, zmq::socket_t& socket, const std::string& endpoint,
                                   std::chrono::milliseconds timeout) {
    const std::string monitor_endpoint = unique_monitor_endpoint("connect");
    const int events = ZMQ_EVENT_CONNECTED | ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
                       ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH;
    if (::zmq_socket_monitor(socket.handle(), monitor_endpoint.c_str(), events) != 0)
        throw_os_error("zmq_socket_monitor", ::zmq_errno());
    struct Detach {
        zmq::socket_t& socket;
        ~Detach() {
            if (socket) ::zmq_socket_monitor(socket.handle(), nullptr, 0);
        }
    } detach{socket};
    zmq::socket_t monitor(context, zmq::socket_type::pair);
    monitor.set(zmq::sockopt::linger, 0);
    monitor.connect(monitor_endpoint);

    const bool curve = socket.get(zmq::sockopt::mechanism) == ZMQ_CURVE;
    try {
        socket.connect(endpoint);
    } catch (const zmq::error_t& e) {
        if (e.num() == EINVAL || e.num() == EPROTONOSUPPORT)
            throw ValueError("cannot connect to '" + endpoint + "': " + e.what());
        throw_zmq("connect " + endpoint, e);
    }
    // A disconnected session ends only once its socket has processed the pipe's termination, so
    // an idle socket would go on retrying (and the server on refusing) until next used; closing
    // it hands that to libzmq's reaper thread.
    auto refuse = [&](const std::string& why) -> AuthenticationError {
        socket.close();
        return AuthenticationError(endpoint + ": " + why);
    };

    const auto deadline = detail::Deadline::after(timeout);
    bool connected = false;
    int closed_handshakes = 0;
    std::vector<zmq::message_t> frames;
    for (;;) {
        if (!recv_message(monitor, frames, 2, std::chrono::milliseconds(deadline.poll_ms()))) break;
        auto event = parse_event(frames);
        if (!event) continue;
        switch (event->event) {
            case ZMQ_EVENT_CONNECTED:
                connected = true;
                break;
            case ZMQ_EVENT_HANDSHAKE_SUCCEEDED:
                return Handshake::succeeded;
            case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH:
                throw refuse("the server refused this process's key (ZAP status " + std::to_string(event->value) +
                             "): it does not serve this authkey");
            case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
                if (event->value == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH) {
                    throw refuse(curve ? "the server does not use CURVE (a plain tcp endpoint); not talking to it in "
                                         "clear text"
                                       : "the server requires CURVE (an authkey) and this socket is plain tcp");
                }
                if (event->value == ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC)
                    throw refuse("the server's CURVE handshake does not decrypt: it does not hold this authkey");
                throw refuse("handshake failed (ZMTP protocol error " + hex_code(event->value) + ")");
            case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL:
                // A CURVE server that cannot open our HELLO closes the connection without a word.
                // Once could be a server that went away; twice in a row is a refusal.
                if (++closed_handshakes >= 2) {
                    throw refuse(curve ? "the server closed the connection during the CURVE handshake twice: it does "
                                         "not hold this authkey, or does not use CURVE"
                                       : "the server closed the connection during the handshake twice: it requires "
                                         "CURVE (an authkey), or is not a ZeroMQ endpoint");
                }
                break;
            default:
                break;
        }
    }
    disconnect_quietly(socket, endpoint);
    return connected ? Handshake::stalled : Handshake::no_server;
}

}  // namespace zmp::transport
