// tcp security: authkey files, CURVE keys derived from the authkey, the ZAP handler, and the
// connect call that learns quickly whether the server admitted it. Real tcp on 127.0.0.1.
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include "zmp/errors.hpp"
#include "zmp/process.hpp"
#include "zmp/transport/security.hpp"
#include "zmp/transport/zsocket.hpp"

using namespace std::chrono_literals;
using namespace zmp::transport;

namespace {

// ---------------------------------------------------------------------------------------------
// Helpers

Authkey counting_key() {
    Authkey key;
    for (std::size_t i = 0; i < key.size(); ++i) key[i] = static_cast<std::uint8_t>(i);
    return key;
}

// Everything a server's authenticator reported, for tests to wait on.
class Refusals {
public:
    RefusalHandler handler() {
        return [this](const Refusal& r) {
            std::lock_guard lock(mutex_);
            seen_.push_back(r);
            changed_.notify_all();
        };
    }
    // Waits (at most `limit`) until some refusal satisfies `match`.
    template <class Match>
    std::optional<Refusal> wait_for(Match match, std::chrono::milliseconds limit = 10s) {
        std::unique_lock lock(mutex_);
        std::optional<Refusal> found;
        changed_.wait_for(lock, limit, [&] {
            for (auto& r : seen_)
                if (match(r)) found = r;
            return found.has_value();
        });
        return found;
    }
    std::size_t count() {
        std::lock_guard lock(mutex_);
        return seen_.size();
    }

private:
    std::mutex mutex_;
    std::condition_variable changed_;
    std::vector<Refusal> seen_;
};

// A ROUTER served with `security` on 127.0.0.1, in a context of its own (as if another process).
struct Server {
    Server(const TcpSecurity& security, zmq::context_t* shared = nullptr)
        : own(shared ? nullptr : std::make_unique<zmq::context_t>(1)),
          context(shared ? *shared : *own),
          zap(Authenticator::of(context)),
          socket(open_socket(context, zmq::socket_type::router)) {
        zap->set_refusal_handler(refusals.handler());
        apply_server_security(socket, security, *zap);
        socket.bind("tcp://127.0.0.1:0");
        endpoint = socket.get(zmq::sockopt::last_endpoint);
    }
    ~Server() { socket.close(); }

    std::unique_ptr<zmq::context_t> own;
    zmq::context_t& context;
    Refusals refusals;
    std::shared_ptr<Authenticator> zap;
    zmq::socket_t socket;
    std::string endpoint;
};

zmq::socket_t client_socket(zmq::context_t& context, const TcpSecurity& security, SocketOptions options = {}) {
    auto socket = open_socket(context, zmq::socket_type::dealer, options);
    apply_client_security(socket, security);
    return socket;
}

// Sends `payload` from the client, answers it from the server with `reply`; returns what the
// client got back. Also checks what the server saw.
std::string round_trip(Server& server, zmq::socket_t& client, const std::string& payload, const std::string& reply,
                       std::string* user_id = nullptr) {
    REQUIRE(send_message(client, {zmq::buffer(payload)}));
    std::vector<zmq::message_t> frames;
    REQUIRE(recv_message(server.socket, frames, 4, 10s));
    REQUIRE(frames.size() == 2);
    CHECK(frames[1].to_string() == payload);
    if (user_id) *user_id = frames[1].gets("User-Id");
    REQUIRE(send_message(server.socket, {zmq::buffer(frames[0].to_string_view()), zmq::buffer(reply)}));
    REQUIRE(recv_message(client, frames, 4, 10s));
    REQUIRE(frames.size() == 1);
    return frames[0].to_string();
}

sockaddr_in loopback(int port) {
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<std::uint16_t>(port));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return address;
}

// A tcp socket bound to a free port of 127.0.0.1 (listening if asked), and that port.
std::pair<int, int> bound_loopback_socket(bool listening) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address = loopback(0);
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
    if (listening) REQUIRE(::listen(fd, 16) == 0);
    socklen_t size = sizeof address;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &size);
    return {fd, ntohs(address.sin_port)};
}

// A plain tcp forwarder on loopback between clients and `upstream`, recording every byte that
// passes in either direction. pause() stops forwarding without closing anything (a cut link).
class Relay {
public:
    explicit Relay(const std::string& upstream_endpoint) {
        auto colon = upstream_endpoint.rfind(':');
        upstream_port_ = std::stoi(upstream_endpoint.substr(colon + 1));
        auto [fd, port] = bound_loopback_socket(true);
        listener_ = fd;
        endpoint_ = "tcp://127.0.0.1:" + std::to_string(port);
        thread_ = std::thread([this] { run(); });
    }
    ~Relay() {
        stop_ = true;
        thread_.join();
        for (auto& [a, b] : links_) {
            ::close(a);
            ::close(b);
        }
        ::close(listener_);
    }
    const std::string& endpoint() const { return endpoint_; }
    std::string recorded() {
        std::lock_guard lock(mutex_);
        return recorded_;
    }
    void pause() { paused_ = true; }

private:
    void run() {
        while (!stop_) {
            std::vector<pollfd> fds{{listener_, POLLIN, 0}};
            if (!paused_) {
                for (auto& [a, b] : links_) {
                    fds.push_back({a, POLLIN, 0});
                    fds.push_back({b, POLLIN, 0});
                }
            }
            if (::poll(fds.data(), fds.size(), 20) <= 0) continue;
            if (fds[0].revents & POLLIN) accept_one();
            for (std::size_t i = 1; i < fds.size(); ++i) {
                if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
                auto& link = links_[(i - 1) / 2];
                int from = fds[i].fd, to = from == link.first ? link.second : link.first;
                char buffer[65536];
                ssize_t n = ::read(from, buffer, sizeof buffer);
                if (n <= 0) {
                    ::shutdown(to, SHUT_WR);
                    continue;
                }
                {
                    std::lock_guard lock(mutex_);
                    recorded_.append(buffer, static_cast<std::size_t>(n));
                }
                for (ssize_t sent = 0; sent < n;) {
                    ssize_t m = ::write(to, buffer + sent, static_cast<std::size_t>(n - sent));
                    if (m <= 0) break;
                    sent += m;
                }
            }
        }
    }
    void accept_one() {
        int client = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
        if (client < 0) return;
        int upstream = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in address = loopback(upstream_port_);
        if (::connect(upstream, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
            ::close(client);
            ::close(upstream);
            return;
        }
        links_.emplace_back(client, upstream);
    }

    int listener_ = -1;
    int upstream_port_ = 0;
    std::string endpoint_;
    std::vector<std::pair<int, int>> links_;
    std::mutex mutex_;
    std::string recorded_;
    std::atomic<bool> stop_{false}, paused_{false};
    std::thread thread_;
};

// A temporary directory, removed at the end of the test.
struct TempDir {
    TempDir() {
        std::string pattern = (std::filesystem::temp_directory_path() / "zmp-security-XXXXXX").string();
        REQUIRE(::mkdtemp(pattern.data()) != nullptr);
        path = pattern;
    }
    ~TempDir() { std::filesystem::remove_all(path); }
    std::string file(const std::string& name) const { return (path / name).string(); }
    std::filesystem::path path;
};

void write_file(const std::string& path, const std::string& content, mode_t mode = 0600) {
    {
        std::ofstream out(path, std::ios::binary | std::ios::trunc);
        out << content;
    }
    REQUIRE(::chmod(path.c_str(), mode) == 0);
}

// The message of what `f` throws as E.
template <class E, class F>
std::string error_of(F f) {
    try {
        f();
    } catch (const E& e) {
        return e.what();
    }
    FAIL("nothing was thrown");
    return {};
}

std::string z85_of_curve_public(const std::string& secret) {
    char public_key[41];
    REQUIRE(zmq_curve_public(public_key, secret.c_str()) == 0);
    return public_key;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Authkeys and files

TEST_CASE("generate_authkey gives 32 random bytes, different each time") {
    Authkey a = generate_authkey(), b = generate_authkey();
    CHECK(a != b);
    CHECK(a != Authkey{});
}

TEST_CASE("an authkey file round-trips, is 64 hex digits and a newline, mode 0600, and is never overwritten") {
    TempDir dir;
    const std::string path = dir.file("authkey");
    Authkey key = generate_authkey();
    ::umask(022);
    write_authkey_file(path, key);
    CHECK(read_authkey_file(path) == key);

    struct stat info {};
    REQUIRE(::stat(path.c_str(), &info) == 0);
    CHECK((info.st_mode & 07777) == 0600);
    std::ifstream in(path, std::ios::binary);
    std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    REQUIRE(content.size() == 65);
    CHECK(content.back() == '\n');
    CHECK(content.find_first_not_of("0123456789abcdef") == 64);

    Authkey other = generate_authkey();
    try {
        write_authkey_file(path, other);
        FAIL("an existing authkey file was replaced");
    } catch (const zmp::OSError& e) {
        CHECK(e.code() == EEXIST);
        CHECK_THAT(e.what(), Catch::Contains(path));
    }
    CHECK(read_authkey_file(path) == key);  // untouched
}

TEST_CASE("authkey files written by hand: upper case, CRLF and no newline are read") {
    TempDir dir;
    const std::string hex = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    std::string upper = hex;
    for (auto& c : upper) c = static_cast<char>(std::toupper(c));
    write_file(dir.file("plain"), hex);
    write_file(dir.file("upper"), upper + "\n");
    write_file(dir.file("crlf"), hex + "\r\n");
    write_file(dir.file("owner-read-only"), hex + "\n", 0400);
    for (auto name : {"plain", "upper", "crlf", "owner-read-only"}) {
        INFO(name);
        CHECK(read_authkey_file(dir.file(name)) == counting_key());
    }
}

TEST_CASE("bad authkey files are refused with an error naming the file and the fix") {
    TempDir dir;
    const std::string hex(64, 'a');

    SECTION("missing") {
        const std::string path = dir.file("absent");
        try {
            read_authkey_file(path);
            FAIL("a missing file was read");
        } catch (const zmp::OSError& e) {
            CHECK(e.code() == ENOENT);
            CHECK_THAT(e.what(), Catch::Contains(path) && Catch::Contains("openssl rand -hex 32"));
        }
    }
    SECTION("readable by group or others") {
        for (mode_t mode : {0644, 0640, 0604, 0620}) {
            const std::string path = dir.file("open-" + std::to_string(mode));
            write_file(path, hex + "\n", mode);
            auto what = error_of<zmp::ValueError>([&] { read_authkey_file(path); });
            CHECK_THAT(what, Catch::Contains(path) && Catch::Contains("chmod 600"));
        }
    }
    SECTION("wrong length") {
        for (std::string content : {hex.substr(2), hex + "aa", std::string(), hex + "\n\n", std::string(5000, 'a')}) {
            const std::string path = dir.file("length");
            write_file(path, content);
            auto what = error_of<zmp::ValueError>([&] { read_authkey_file(path); });
            CHECK_THAT(what, Catch::Contains(path) && Catch::Contains("64 hexadecimal digits"));
        }
    }
    SECTION("not hexadecimal") {
        std::string bad = hex;
        bad[10] = 'g';
        write_file(dir.file("bad"), bad + "\n");
        auto what = error_of<zmp::ValueError>([&] { read_authkey_file(dir.file("bad")); });
        CHECK_THAT(what, Catch::Contains(dir.file("bad")) && Catch::Contains("offset 10"));
    }
    SECTION("raw binary (32 bytes)") {
        Authkey key = generate_authkey();
        write_file(dir.file("raw"), std::string(reinterpret_cast<const char*>(key.data()), key.size()));
        auto what = error_of<zmp::ValueError>([&] { read_authkey_file(dir.file("raw")); });
        CHECK_THAT(what, Catch::Contains(dir.file("raw")));
    }
    SECTION("a directory") {
        REQUIRE(::chmod(dir.path.c_str(), 0700) == 0);
        auto what = error_of<zmp::ValueError>([&] { read_authkey_file(dir.path.string()); });
        CHECK_THAT(what, Catch::Contains("not a regular file"));
    }
}

// ---------------------------------------------------------------------------------------------
// Key derivation

TEST_CASE("CURVE keys are derived deterministically, differ per authkey and per side, and pair up") {
    Authkey a = generate_authkey(), b = generate_authkey();
    CurveKeys ka = derive_curve_keys(a), ka2 = derive_curve_keys(a), kb = derive_curve_keys(b);
    CHECK(ka.server_public == ka2.server_public);
    CHECK(ka.server_secret == ka2.server_secret);
    CHECK(ka.client_public == ka2.client_public);
    CHECK(ka.client_secret == ka2.client_secret);
    CHECK(ka.server_public != kb.server_public);
    CHECK(ka.client_public != kb.client_public);
    CHECK(ka.server_public != ka.client_public);
    CHECK(ka.server_secret != ka.client_secret);
    for (auto* k : {&ka, &kb}) {
        CHECK(k->server_public.size() == 40);
        CHECK(k->client_secret.size() == 40);
        CHECK(z85_of_curve_public(k->server_secret) == k->server_public);
        CHECK(z85_of_curve_public(k->client_secret) == k->client_public);
    }
    CHECK(TcpSecurity::curve(a).zap_domain() != TcpSecurity::curve(b).zap_domain());
}

TEST_CASE("the derivation is the documented one: crypto_box_seed_keypair(HMAC-SHA256(authkey, label))") {
    // Computed outside zmp (Python: hmac, hashlib.sha512 and an RFC 7748 X25519) for the authkey
    // 00 01 02 ... 1f; a change here breaks every deployment that mixes old and new builds.
    CurveKeys keys = derive_curve_keys(counting_key());
    CHECK(keys.server_public == "eZ*SbSw!%P9h*Ix)iPjyR$8f7N(>CaRZ>4MLE=&h");
    CHECK(keys.server_secret == "aUgHn?auKy?lm:2kcEtRd5:(+X7jFh.nHd7X>kGu");
    CHECK(keys.client_public == "4W2-tQy6C%ka<XZ{t8*NpW6WPp7fKzga+ziLJE(?");
    CHECK(keys.client_secret == "PSu)t1x]H6He]ITs!vV2nh(Se5e:xAfem+9YUFu8");
}

TEST_CASE("an insecure TcpSecurity has no keys") {
    auto security = TcpSecurity::insecure();
    CHECK(security.is_insecure());
    CHECK_FALSE(TcpSecurity::curve(counting_key()).is_insecure());
    CHECK_THROWS_AS(security.keys(), zmp::ValueError);
}

// ---------------------------------------------------------------------------------------------
// CURVE over tcp

TEST_CASE("with the right authkey a DEALER and a ROUTER exchange messages both ways") {
    Authkey key = generate_authkey();
    auto security = TcpSecurity::curve(key);
    Server server(security);
    zmq::context_t context(1);
    auto client = client_socket(context, security);
    REQUIRE(connect_and_authenticate(context, client, server.endpoint, 5s) == Handshake::succeeded);
    std::string user_id;
    CHECK(round_trip(server, client, "ping", "pong", &user_id) == "pong");
    CHECK(user_id == security.zap_domain());  // admitted by zmp's ZAP handler, under its authkey
    for (int i = 0; i < 100; ++i)
        CHECK(round_trip(server, client, std::to_string(i), "ok" + std::to_string(i)) == "ok" + std::to_string(i));
    CHECK(server.refusals.count() == 0);
}

TEST_CASE("nothing travels in clear text with CURVE, and the insecure mode (asked for by name) shows it would") {
    const std::string secret = "distinctive-payload-7f3a9c-both-ways";
    for (bool insecure : {false, true}) {
        INFO((insecure ? "insecure" : "curve"));
        auto security = insecure ? TcpSecurity::insecure() : TcpSecurity::curve(generate_authkey());
        Server server(security);
        Relay relay(server.endpoint);
        zmq::context_t context(1);
        auto client = client_socket(context, security);
        REQUIRE(connect_and_authenticate(context, client, relay.endpoint(), 5s) == Handshake::succeeded);
        CHECK(round_trip(server, client, secret + "-up", secret + "-down") == secret + "-down");
        client.close();
        std::string bytes = relay.recorded();
        CHECK(bytes.size() > 2 * secret.size());
        CHECK((bytes.find(secret + "-up") != std::string::npos) == insecure);
        CHECK((bytes.find(secret + "-down") != std::string::npos) == insecure);
    }
}

TEST_CASE("a client holding another authkey gets AuthenticationError, and the server reports its address") {
    Server server(TcpSecurity::curve(generate_authkey()));
    zmq::context_t context(1);
    auto wrong = TcpSecurity::curve(generate_authkey());
    // The address of a handshake that never reaches ZAP is read from the connection's fd; a
    // connection closed before the handler reads it has no address, so a few attempts are allowed.
    std::optional<Refusal> with_address;
    for (int attempt = 0; attempt < 20 && !with_address; ++attempt) {
        auto client = client_socket(context, wrong);
        try {
            connect_and_authenticate(context, client, server.endpoint, 1s);
            FAIL("a client with another authkey was admitted");
        } catch (const zmp::AuthenticationError& e) {
            CHECK_THAT(e.what(), Catch::Contains(server.endpoint) && Catch::Contains("authkey"));
        }
        with_address = server.refusals.wait_for(
            [](const Refusal& r) {
                return r.peer == "127.0.0.1" && r.reason.find("another authkey") != std::string::npos;
            },
            200ms);
    }
    REQUIRE(with_address);
    CHECK(with_address->mechanism == "CURVE");
    CHECK_THAT(describe(*with_address), Catch::StartsWith("zmp: refused tcp peer 127.0.0.1 (CURVE): "));

    SECTION("and is not left reconnecting for ever") {
        auto client = client_socket(context, wrong);
        CHECK_THROWS_AS(connect_and_authenticate(context, client, server.endpoint, 1s), zmp::AuthenticationError);
        CHECK_FALSE(client);                 // closed: nothing retries in the background
        std::this_thread::sleep_for(500ms);  // reports of the attempts made so far arrive
        std::size_t before = server.refusals.count();
        std::this_thread::sleep_for(500ms);  // a socket still connecting would retry every 10 ms
        CHECK(server.refusals.count() == before);
    }
}

TEST_CASE("a plain (NULL) client and a CURVE server refuse each other") {
    SECTION("plain client, CURVE server") {
        Server server(TcpSecurity::curve(generate_authkey()));
        zmq::context_t context(1);
        // Whichever side reads the other's greeting first sees the mismatch, the other only a
        // closed connection: a few attempts let the server be first at least once.
        std::optional<Refusal> refusal;
        for (int attempt = 0; attempt < 20 && !refusal; ++attempt) {
            auto client = client_socket(context, TcpSecurity::insecure());
            auto what = error_of<zmp::AuthenticationError>(
                [&] { connect_and_authenticate(context, client, server.endpoint, 1s); });
            CHECK_THAT(what, Catch::Contains(server.endpoint) && Catch::Contains("requires CURVE"));
            refusal = server.refusals.wait_for(
                [](const Refusal& r) { return r.reason.find("does not use CURVE") != std::string::npos; }, 200ms);
        }
        REQUIRE(refusal);
        CHECK(refusal->mechanism == "CURVE");
    }
    SECTION("CURVE client, plain server") {
        Server server(TcpSecurity::insecure());
        zmq::context_t context(1);
        auto client = client_socket(context, TcpSecurity::curve(generate_authkey()));
        auto what =
            error_of<zmp::AuthenticationError>([&] { connect_and_authenticate(context, client, server.endpoint, 1s); });
        CHECK_THAT(what, Catch::Contains(server.endpoint) && Catch::Contains("does not use CURVE"));
    }
}

TEST_CASE("one process serves two authkeys with one ZAP handler, each admitting its own clients only") {
    zmq::context_t server_context(1);
    Refusals refusals;  // outlives the servers (and so the handler that reports to it)
    Authkey key_a = generate_authkey(), key_b = generate_authkey();
    Server a(TcpSecurity::curve(key_a), &server_context);
    Server b(TcpSecurity::curve(key_b), &server_context);
    REQUIRE(a.zap == b.zap);  // one handler per context
    // Both servers report to the one handler; the last handler installed receives everything.
    a.zap->set_refusal_handler(refusals.handler());

    zmq::context_t context(1);
    auto client_a = client_socket(context, TcpSecurity::curve(key_a));
    auto client_b = client_socket(context, TcpSecurity::curve(key_b));
    REQUIRE(connect_and_authenticate(context, client_a, a.endpoint, 5s) == Handshake::succeeded);
    REQUIRE(connect_and_authenticate(context, client_b, b.endpoint, 5s) == Handshake::succeeded);
    CHECK(round_trip(a, client_a, "to a", "from a") == "from a");
    CHECK(round_trip(b, client_b, "to b", "from b") == "from b");

    auto other_a = client_socket(context, TcpSecurity::curve(key_a));
    CHECK_THROWS_AS(connect_and_authenticate(context, other_a, b.endpoint, 1s), zmp::AuthenticationError);

    // A client of b that has learnt a's public key gets past the encryption; ZAP must stop it.
    auto keys_a = derive_curve_keys(key_a), keys_b = derive_curve_keys(key_b);
    auto crafted = open_socket(context, zmq::socket_type::dealer);
    crafted.set(zmq::sockopt::curve_serverkey, keys_a.server_public);
    crafted.set(zmq::sockopt::curve_publickey, keys_b.client_public);
    crafted.set(zmq::sockopt::curve_secretkey, keys_b.client_secret);
    auto what = error_of<zmp::AuthenticationError>([&] { connect_and_authenticate(context, crafted, a.endpoint, 1s); });
    CHECK_THAT(what, Catch::Contains("ZAP status 400"));
    auto refusal = refusals.wait_for([](const Refusal& r) { return r.reason == "unknown CURVE key"; });
    REQUIRE(refusal);
    CHECK(refusal->peer == "127.0.0.1");  // ZAP always knows the address
    CHECK(refusal->mechanism == "CURVE");
    CHECK(describe(*refusal) == "zmp: refused tcp peer 127.0.0.1 (CURVE): unknown CURVE key");

    // The admitted clients are unaffected.
    CHECK(round_trip(a, client_a, "still a", "yes a") == "yes a");
    CHECK(round_trip(b, client_b, "still b", "yes b") == "yes b");
}

TEST_CASE("no server yet: no_server, and a later attempt succeeds once it listens") {
    // A port that was free a moment ago; nothing listens on it until the server binds it.
    auto [probe, port] = bound_loopback_socket(false);
    ::close(probe);
    const std::string endpoint = "tcp://127.0.0.1:" + std::to_string(port);

    Authkey key = generate_authkey();
    zmq::context_t context(1);
    auto client = client_socket(context, TcpSecurity::curve(key));
    CHECK(connect_and_authenticate(context, client, endpoint, 300ms) == Handshake::no_server);

    zmq::context_t server_context(1);
    auto zap = Authenticator::of(server_context);
    auto server = open_socket(server_context, zmq::socket_type::router);
    apply_server_security(server, TcpSecurity::curve(key), *zap);
    server.bind(endpoint);
    CHECK(connect_and_authenticate(context, client, endpoint, 5s) == Handshake::succeeded);
    server.close();
}

TEST_CASE("a listener that never answers the handshake: stalled") {
    auto [listener, port] = bound_loopback_socket(true);  // the kernel completes connections; nobody speaks
    zmq::context_t context(1);
    auto client = client_socket(context, TcpSecurity::curve(generate_authkey()));
    CHECK(connect_and_authenticate(context, client, "tcp://127.0.0.1:" + std::to_string(port), 300ms) ==
          Handshake::stalled);
    ::close(listener);
}

TEST_CASE("connect_and_authenticate refuses a malformed endpoint") {
    zmq::context_t context(1);
    auto client = client_socket(context, TcpSecurity::curve(generate_authkey()));
    CHECK_THROWS_AS(connect_and_authenticate(context, client, "tcp://no-port-here", 100ms), zmp::ValueError);
    CHECK_THROWS_AS(connect_and_authenticate(context, client, "carrier-pigeon://x", 100ms), zmp::ValueError);
}

// ---------------------------------------------------------------------------------------------
// The handler's life

TEST_CASE("apply_server_security keeps the socket's limits and refuses sockets it cannot protect") {
    zmq::context_t context(1);
    auto zap = Authenticator::of(context);
    auto security = TcpSecurity::curve(generate_authkey());

    auto good = open_socket(context, zmq::socket_type::router, SocketOptions{.max_message = 4096});
    apply_server_security(good, security, *zap);
    CHECK(good.get(zmq::sockopt::maxmsgsize) == 4096);
    CHECK(good.get(zmq::sockopt::curve_server) == 1);

    auto bound = open_socket(context, zmq::socket_type::router);
    bound.bind("tcp://127.0.0.1:0");
    CHECK_THROWS_AS(apply_server_security(bound, security, *zap), zmp::ValueError);

    zmq::socket_t unlimited(context, zmq::socket_type::router);  // not made by open_socket
    unlimited.set(zmq::sockopt::linger, 0);
    CHECK_THROWS_AS(apply_server_security(unlimited, security, *zap), zmp::ValueError);

    zap->stop();
    auto late = open_socket(context, zmq::socket_type::router);
    CHECK_THROWS_AS(apply_server_security(late, security, *zap), zmp::OSError);
}

TEST_CASE("stop() frees the ZAP endpoint: of() starts a new handler, which serves") {
    zmq::context_t context(1);
    auto first = Authenticator::of(context);
    CHECK(Authenticator::of(context) == first);
    first->stop();
    first->stop();  // idempotent
    auto second = Authenticator::of(context);
    CHECK(second != first);

    Authkey key = generate_authkey();
    auto server = open_socket(context, zmq::socket_type::router);
    apply_server_security(server, TcpSecurity::curve(key), *second);
    server.bind("tcp://127.0.0.1:0");
    zmq::context_t client_context(1);
    auto client = client_socket(client_context, TcpSecurity::curve(key));
    CHECK(connect_and_authenticate(client_context, client, server.get(zmq::sockopt::last_endpoint), 5s) ==
          Handshake::succeeded);
    server.close();
}

TEST_CASE("terminating the context stops its ZAP handler instead of hanging") {
    auto context = std::make_unique<zmq::context_t>(1);
    auto zap = Authenticator::of(*context);
    context->close();  // would wait for ever for the handler's sockets if it did not let go
    zap.reset();
    SUCCEED();
}

TEST_CASE("a forked child never touches its parent's ZAP handler and can start its own") {
    zmq::context_t context(1);
    Authkey key = generate_authkey();
    auto holder = std::make_unique<std::shared_ptr<Authenticator>>(Authenticator::of(context));
    auto server = open_socket(context, zmq::socket_type::router);
    apply_server_security(server, TcpSecurity::curve(key), **holder);
    server.bind("tcp://127.0.0.1:0");
    const std::string endpoint = server.get(zmq::sockopt::last_endpoint);

    zmp::Process child(zmp::ProcessOptions{.method = zmp::StartMethod::fork}, [&holder] {
        holder->reset();  // the last reference in the child: leaked, not stopped
        zmq::context_t own(1);
        auto zap = Authenticator::of(own);
        zap->stop();
    });
    child.start();
    child.join();
    CHECK(child.exitcode() == 0);

    zmq::context_t client_context(1);
    auto client = client_socket(client_context, TcpSecurity::curve(key));
    CHECK(connect_and_authenticate(client_context, client, endpoint, 5s) == Handshake::succeeded);
    server.close();
}

// ---------------------------------------------------------------------------------------------
// Heartbeats (SocketOptions)

TEST_CASE("ZMTP heartbeats close a connection whose peer went silent without a FIN") {
    Authkey key = generate_authkey();
    Server server(TcpSecurity::curve(key));
    Relay relay(server.endpoint);
    zmq::context_t context(1);
    SocketOptions options{.heartbeat_ivl_ms = 100, .heartbeat_timeout_ms = 300};
    auto client = client_socket(context, TcpSecurity::curve(key), options);
    CHECK(client.get(zmq::sockopt::heartbeat_ivl) == 100);
    CHECK(client.get(zmq::sockopt::heartbeat_timeout) == 300);
    REQUIRE(connect_and_authenticate(context, client, relay.endpoint(), 5s) == Handshake::succeeded);
    CHECK(round_trip(server, client, "before", "the cut") == "the cut");

    REQUIRE(zmq_socket_monitor(client.handle(), "inproc://heartbeat-test", ZMQ_EVENT_DISCONNECTED) == 0);
    zmq::socket_t monitor(context, zmq::socket_type::pair);
    monitor.set(zmq::sockopt::linger, 0);
    monitor.connect("inproc://heartbeat-test");
    relay.pause();  // the link stays open and silent: only a heartbeat can tell
    std::vector<zmq::message_t> frames;
    CHECK(recv_message(monitor, frames, 2, 20s));
    zmq_socket_monitor(client.handle(), nullptr, 0);
}

TEST_CASE("heartbeat settings are checked") {
    zmq::context_t context(1);
    CHECK_THROWS_AS(open_socket(context, zmq::socket_type::dealer, SocketOptions{.heartbeat_ivl_ms = -1}),
                    zmp::ValueError);
    CHECK_THROWS_AS(open_socket(context, zmq::socket_type::dealer, SocketOptions{.heartbeat_ttl_ms = 7000000}),
                    zmp::ValueError);
    auto socket = open_socket(context, zmq::socket_type::dealer, SocketOptions{.heartbeat_ttl_ms = 6553599});
    CHECK(socket.get(zmq::sockopt::heartbeat_ttl) == 6553500);  // deciseconds on the wire
}
