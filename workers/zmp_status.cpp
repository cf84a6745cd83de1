// zmp-status: what a running zmp program on this host is doing — the processes its broker
// serves, its objects (queue depths and waiting consumers, lock holders and waiters, barriers),
// and its pools' workers (pid, state, tasks done, in flight, failures, restarts, which died and
// what replaced them).
//
//     zmp-status                    the one zmp program running on this host
//     zmp-status --pid 1234         the program whose root process is 1234
//     zmp-status --run-dir /tmp/zmp-1234-Ab3xYz --json
//     zmp-status --watch 2          refreshes every 2 s until the program ends (Ctrl-C to stop)
//     zmp-status --connect tcp://head:6000 --connect tcp://head:5555 --authkey-file cluster.key
//                                   a program on another host: its broker (zmp::serve) and/or a
//                                   pool that binds tcp (PoolOptions::bind), over CURVE
//
// How it finds them: a run's directory (runtime/run_directory.hpp) holds the broker's endpoint
// ("broker") and one "pools-<pid>" endpoint per process that runs pools (pool/status_server.hpp).
// It asks the broker with the broker protocol's STATUS op (broker/status.hpp) after a HELLO, and
// each pool endpoint with one request; each answer is a msgpack map, printed as a table or, with
// --json, as the same maps in JSON:
//
//   {"run_directory": "...", "root_pid": N, "broker": {...} | null, "processes": [{"pid", "name", "pools": [...]}]}
//
// Across hosts (--connect, any number of endpoints) it holds the authkey of the program: each
// endpoint is reached over CURVE with keys derived from it (transport/security.hpp), so a wrong
// key is an AuthenticationError at once. It asks every endpoint with the broker's STATUS request
// (no HELLO needed); a pool's join point answers that, as anything from a peer that has not
// joined, with "join again" ([7]), and is then asked the pool's way ([10], pool/dispatcher.hpp).
// The document is then {"endpoints": [...], "broker": {...} | null, "processes": [...]}.
//
// Exit status: 0 when it printed a status; 1 when no run was found, its broker did not answer, an
// endpoint did not answer or refused the authkey; 2 for bad arguments.
#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <msgpack.hpp>
#include <zmq.hpp>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "broker/protocol.hpp"
#include "pool/dispatcher.hpp"
#include "pool/status_server.hpp"
#include "runtime/run_directory.hpp"
#include "zmp/errors.hpp"
#include "zmp/transport/codec.hpp"
#include "zmp/transport/security.hpp"
#include "zmp/transport/zsocket.hpp"

namespace {

namespace broker = zmp::detail::broker;

constexpr int kBrokerWaitMs = 5000;
constexpr int kPoolWaitMs = 7000;  // a pool's dispatcher may take up to 5 s (kPoolStatusWait)

struct NotFound : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// ---- finding the run --------------------------------------------------------------------------------

std::vector<std::string> list_dir(const std::string& dir) {
    std::vector<std::string> names;
    if (DIR* d = ::opendir(dir.c_str())) {
        while (const dirent* e = ::readdir(d)) names.emplace_back(e->d_name);
        ::closedir(d);
    }
    return names;
}

// The root pid in a run directory's name, zmp-<pid>-XXXXXX; 0 if it is not one.
pid_t root_of(const std::string& name) {
    if (name.rfind("zmp-", 0) != 0) return 0;
    const std::size_t dash = name.find('-', 4);
    if (dash == std::string::npos || dash == 4) return 0;
    try {
        return static_cast<pid_t>(std::stol(name.substr(4, dash - 4)));
    } catch (...) {
        return 0;
    }
}

bool alive(pid_t pid) { return pid > 0 && (::kill(pid, 0) == 0 || errno == EPERM); }

bool has_broker(const std::string& dir) {
    struct stat st {};
    return ::stat((dir + "/broker").c_str(), &st) == 0 && S_ISSOCK(st.st_mode);
}

// The run directories of live roots on this host that have a broker.
std::vector<std::string> live_runs(std::optional<pid_t> only) {
    const std::string base = zmp::detail::run_directory_base();
    std::vector<std::string> runs;
    for (const std::string& name : list_dir(base)) {
        const pid_t root = root_of(name);
        if (root == 0 || (only && root != *only) || !alive(root)) continue;
        if (has_broker(base + "/" + name)) runs.push_back(base + "/" + name);
    }
    return runs;
}

std::string find_run(std::optional<pid_t> pid, const std::string& run_dir) {
    if (!run_dir.empty()) {
        if (!has_broker(run_dir))
            throw NotFound(run_dir + " is not the directory of a running zmp program (no broker in it)");
        return run_dir;
    }
    const auto runs = live_runs(pid);
    if (runs.size() == 1) return runs.front();
    if (runs.empty()) {
        throw NotFound(pid ? "no running zmp program with root pid " + std::to_string(*pid) + " (looked in " +
                                 zmp::detail::run_directory_base() + ")"
                           : "no running zmp program on this host (looked in " + zmp::detail::run_directory_base() +
                                 ")");
    }
    std::string text = "several zmp programs are running; choose one with --pid or --run-dir:";
    for (const auto& r : runs) text += "\n  " + r;
    throw NotFound(text);
}

// ---- asking ----------------------------------------------------------------------------------------

struct Answer {
    zmq::message_t frame;
    msgpack::object_handle map;
};

bool recv_with_timeout(zmq::socket_t& socket, zmq::message_t& frame, int timeout_ms) {
    zmq::pollitem_t item{socket.handle(), 0, ZMQ_POLLIN, 0};
    if (zmq::poll(&item, 1, std::chrono::milliseconds(timeout_ms)) <= 0) return false;
    return socket.recv(frame, zmq::recv_flags::dontwait).has_value();
}

std::optional<msgpack::object_handle> ask_broker(zmq::context_t& context, const std::string& dir) {
    zmq::socket_t dealer(context, zmq::socket_type::dealer);
    dealer.set(zmq::sockopt::linger, 0);
    dealer.set(zmq::sockopt::maxmsgsize, broker::kMaxBatchFrame);
    dealer.connect(zmp::transport::ipc_endpoint(dir, "broker"));
    auto request = [&](broker::Op op, std::uint64_t rid, std::initializer_list<std::int64_t> args) {
        msgpack::sbuffer out;
        broker::encode_request(out, op, 0, rid, args);
        dealer.send(zmq::const_buffer(out.data(), out.size()), zmq::send_flags::none);
        // Answers to no request (the broker's probes, request id 0) are skipped.
        for (;;) {
            zmq::message_t envelope;
            if (!recv_with_timeout(dealer, envelope, kBrokerWaitMs)) return std::optional<zmq::message_t>();
            const broker::Reply reply = broker::decode_reply(envelope.data(), envelope.size());
            zmq::message_t payload;
            if (envelope.more()) (void)dealer.recv(payload);
            if (reply.rid != rid) continue;
            if (reply.status != broker::Status::ok) throw NotFound("the broker refused: " + reply.text);
            return std::optional<zmq::message_t>(std::move(payload));
        }
    };
    if (!request(broker::Op::hello, 1, {::getpid(), 1})) return std::nullopt;
    auto payload = request(broker::Op::status, 2, {});
    if (!payload || payload->size() == 0) return std::nullopt;
    return msgpack::unpack(payload->data<char>(), payload->size());
}

std::vector<msgpack::object_handle> ask_pools(zmq::context_t& context, const std::string& dir) {
    std::vector<msgpack::object_handle> answers;
    for (const std::string& name : list_dir(dir)) {
        if (name.rfind("pools-", 0) != 0) continue;
        pid_t pid = 0;
        try {
            pid = static_cast<pid_t>(std::stol(name.substr(6)));
        } catch (...) {
            continue;
        }
        if (name != zmp::detail::pool_status_name(pid) || !alive(pid)) continue;
        zmq::socket_t req(context, zmq::socket_type::req);
        req.set(zmq::sockopt::linger, 0);
        req.connect(zmp::transport::ipc_endpoint(dir, name));
        req.send(zmq::str_buffer("status"), zmq::send_flags::none);
        zmq::message_t reply;
        if (!recv_with_timeout(req, reply, kPoolWaitMs)) continue;  // it ended meanwhile
        try {
            answers.push_back(msgpack::unpack(reply.data<char>(), reply.size()));
        } catch (const std::exception&) {
        }
    }
    return answers;
}

// ---- asking across hosts ---------------------------------------------------------------------------

constexpr auto kConnectWait = std::chrono::seconds(5);

// What one tcp endpoint said: a broker's status or a pool's (a pools-<pid> answer).
struct RemoteAnswer {
    std::optional<msgpack::object_handle> broker;
    std::optional<msgpack::object_handle> process;
};

RemoteAnswer ask_endpoint(zmq::context_t& context, const std::string& endpoint,
                          const zmp::transport::TcpSecurity& security) {
    zmq::socket_t dealer = zmp::transport::open_socket(
        context, zmq::socket_type::dealer,
        zmp::transport::SocketOptions{.max_message = static_cast<std::int64_t>(zmp::detail::kMaxPoolMessage)});
    zmp::transport::apply_client_security(dealer, security);
    // Throws AuthenticationError at once when the endpoint holds another authkey.
    if (zmp::transport::connect_and_authenticate(context, dealer, endpoint,
                                                 std::chrono::duration_cast<std::chrono::milliseconds>(kConnectWait)) !=
        zmp::transport::Handshake::succeeded)
        throw NotFound("nothing answers at " + endpoint);
    msgpack::sbuffer out;
    broker::encode_request(out, broker::Op::status, 0, 1, {});
    dealer.send(zmq::const_buffer(out.data(), out.size()), zmq::send_flags::none);
    for (;;) {
        zmq::message_t first;
        if (!recv_with_timeout(dealer, first, kPoolWaitMs)) throw NotFound(endpoint + " did not answer");
        zmq::message_t second;
        if (first.more()) (void)dealer.recv(second);
        while (dealer.get(zmq::sockopt::rcvmore)) (void)dealer.recv(second);
        // A pool's join point: "join again", then asked the pool's way.
        try {
            const zmp::transport::Decoded decoded = zmp::transport::decode(first.data<char>(), first.size());
            const msgpack::object& m = decoded.get();
            if (m.type == msgpack::type::ARRAY && m.via.array.size >= 1 &&
                m.via.array.ptr[0].type == msgpack::type::POSITIVE_INTEGER) {
                const auto kind = m.via.array.ptr[0].via.u64;
                if (kind == zmp::detail::kJoinAgain && m.via.array.size == 1) {
                    msgpack::sbuffer ask;
                    msgpack::packer<msgpack::sbuffer>(ask).pack_array(1).pack(
                        static_cast<int>(zmp::detail::kJoinStatus));
                    dealer.send(zmq::const_buffer(ask.data(), ask.size()), zmq::send_flags::none);
                    continue;
                }
                if (kind == zmp::detail::kJoinStatus && m.via.array.size == 2) {
                    // The map is the second element: packed again, it is a handle of its own.
                    msgpack::sbuffer map;
                    msgpack::pack(map, m.via.array.ptr[1]);
                    RemoteAnswer answer;
                    answer.process = msgpack::unpack(map.data(), map.size());
                    return answer;
                }
            }
        } catch (const std::exception&) {
            // Not a pool's message: read as the broker's below.
        }
        const broker::Reply reply = broker::decode_reply(first.data(), first.size());
        if (reply.rid != 1) continue;  // an answer to no request of ours
        if (reply.status != broker::Status::ok) throw NotFound("the broker at " + endpoint + " refused: " + reply.text);
        if (second.size() == 0) throw NotFound("the broker at " + endpoint + " sent no status");
        RemoteAnswer answer;
        answer.broker = msgpack::unpack(second.data<char>(), second.size());
        return answer;
    }
}

// ---- printing --------------------------------------------------------------------------------------

void json(std::ostream& out, const msgpack::object& o) {
    switch (o.type) {
        case msgpack::type::NIL:
            out << "null";
            break;
        case msgpack::type::BOOLEAN:
            out << (o.via.boolean ? "true" : "false");
            break;
        case msgpack::type::POSITIVE_INTEGER:
            out << o.via.u64;
            break;
        case msgpack::type::NEGATIVE_INTEGER:
            out << o.via.i64;
            break;
        case msgpack::type::FLOAT32:
        case msgpack::type::FLOAT64:
            out << o.via.f64;
            break;
        case msgpack::type::STR:
        case msgpack::type::BIN: {
            const std::string_view s(o.via.str.ptr, o.via.str.size);
            out << '"';
            for (const char c : s) {
                if (c == '"' || c == '\\') {
                    out << '\\' << c;
                } else if (static_cast<unsigned char>(c) < 0x20) {
                    char buffer[8];
                    std::snprintf(buffer, sizeof buffer, "\\u%04x", static_cast<unsigned>(c));
                    out << buffer;
                } else {
                    out << c;
                }
            }
            out << '"';
            break;
        }
        case msgpack::type::ARRAY:
            out << '[';
            for (std::uint32_t i = 0; i < o.via.array.size; ++i) {
                if (i > 0) out << ',';
                json(out, o.via.array.ptr[i]);
            }
            out << ']';
            break;
        case msgpack::type::MAP:
            out << '{';
            for (std::uint32_t i = 0; i < o.via.map.size; ++i) {
                if (i > 0) out << ',';
                const auto& kv = o.via.map.ptr[i];
                if (kv.key.type == msgpack::type::STR) {
                    json(out, kv.key);
                } else {
                    std::ostringstream key;
                    json(key, kv.key);
                    out << '"' << key.str() << '"';
                }
                out << ':';
                json(out, kv.val);
            }
            out << '}';
            break;
        default:
            out << "null";
    }
}

const msgpack::object* field(const msgpack::object& map, std::string_view name) {
    if (map.type != msgpack::type::MAP) return nullptr;
    for (std::uint32_t i = 0; i < map.via.map.size; ++i) {
        const auto& kv = map.via.map.ptr[i];
        if (kv.key.type == msgpack::type::STR && std::string_view(kv.key.via.str.ptr, kv.key.via.str.size) == name)
            return &kv.val;
    }
    return nullptr;
}

std::string text(const msgpack::object* o) {
    if (o == nullptr) return "-";
    std::ostringstream out;
    if (o->type == msgpack::type::STR) return std::string(o->via.str.ptr, o->via.str.size);
    json(out, *o);
    return out.str();
}

std::string text(const msgpack::object& map, std::string_view name) { return text(field(map, name)); }

std::vector<const msgpack::object*> items(const msgpack::object* array) {
    std::vector<const msgpack::object*> out;
    if (array != nullptr && array->type == msgpack::type::ARRAY)
        for (std::uint32_t i = 0; i < array->via.array.size; ++i) out.push_back(&array->via.array.ptr[i]);
    return out;
}

// Rows of cells, printed in columns as wide as their widest cell.
void table(std::ostream& out, const std::vector<std::vector<std::string>>& rows, const std::string& indent) {
    std::vector<std::size_t> widths;
    for (const auto& row : rows)
        for (std::size_t i = 0; i < row.size(); ++i) {
            if (widths.size() <= i) widths.push_back(0);
            widths[i] = std::max(widths[i], row[i].size());
        }
    for (const auto& row : rows) {
        std::string line = indent;
        for (std::size_t i = 0; i < row.size(); ++i) {
            line += row[i];
            if (i + 1 < row.size()) line += std::string(widths[i] - row[i].size() + 2, ' ');
        }
        out << line << '\n';
    }
}

struct Status {
    std::string dir;
    std::vector<std::string> endpoints;  // across hosts, instead of dir
    pid_t root = 0;
    std::optional<msgpack::object_handle> broker;
    std::vector<msgpack::object_handle> processes;
};

void print_json(std::ostream& out, const Status& st) {
    msgpack::zone zone;
    if (st.endpoints.empty()) {
        out << "{\"run_directory\":";
        json(out, msgpack::object(st.dir, zone));
        out << ",\"root_pid\":" << st.root;
    } else {
        out << "{\"endpoints\":";
        json(out, msgpack::object(st.endpoints, zone));
    }
    out << ",\"broker\":";
    if (st.broker) {
        json(out, st.broker->get());
    } else {
        out << "null";
    }
    out << ",\"processes\":[";
    for (std::size_t i = 0; i < st.processes.size(); ++i) {
        if (i > 0) out << ',';
        json(out, st.processes[i].get());
    }
    out << "]}\n";
}

void print_table(std::ostream& out, const Status& st) {
    if (st.endpoints.empty()) {
        out << "zmp program, root pid " << st.root << " (" << st.dir << ")\n";
    } else {
        out << "zmp program at";
        for (const auto& e : st.endpoints) out << ' ' << e;
        out << '\n';
    }
    if (!st.broker) {
        if (st.endpoints.empty()) out << "broker: no answer\n";
    } else {
        const msgpack::object& b = st.broker->get();
        const auto clients = items(field(b, "clients"));
        const auto objects = items(field(b, "objects"));
        out << "\nbroker: pid " << text(b, "pid") << " on " << text(b, "host") << ", " << clients.size()
            << " processes, " << objects.size() << " objects\n";
        std::vector<std::vector<std::string>> rows{{"PID", "NAME", "HOST", "CONNECTIONS", "WAITING", "REFERENCES"}};
        for (const auto* c : clients)
            rows.push_back({text(*c, "pid"), text(*c, "name"), text(*c, "host"), text(*c, "connections"),
                            text(*c, "waiting"), text(*c, "references")});
        table(out, rows, "  ");
        if (!objects.empty()) {
            out << '\n';
            rows = {{"OBJECT", "ID", "STATE"}};
            for (const auto* o : objects) {
                std::string state;
                for (std::uint32_t i = 0; i < o->via.map.size; ++i) {
                    const auto& kv = o->via.map.ptr[i];
                    const std::string key = text(&kv.key);
                    if (key == "kind" || key == "id") continue;
                    state += (state.empty() ? "" : " ") + key + "=" + text(&kv.val);
                }
                rows.push_back({text(*o, "kind"), text(*o, "id"), state});
            }
            table(out, rows, "  ");
        }
    }
    for (const auto& process : st.processes) {
        const msgpack::object& p = process.get();
        for (const auto* pool : items(field(p, "pools"))) {
            out << "\npool of " << text(p, "name") << " (pid " << text(p, "pid") << "): " << text(*pool, "processes")
                << " " << text(*pool, "method") << " workers, " << text(*pool, "state") << ", " << text(*pool, "jobs")
                << " jobs, " << text(*pool, "queued") << " queued, " << text(*pool, "restarts") << " restarts\n";
            std::vector<std::vector<std::string>> rows{
                {"WORKER", "PID", "HOST", "STATE", "TASKS DONE", "IN FLIGHT", "FAILURES", "RUNNING"}};
            for (const auto* w : items(field(*pool, "workers")))
                rows.push_back({text(*w, "name"), text(*w, "pid"), text(*w, "host"), text(*w, "state"),
                                text(*w, "tasks_done"), text(*w, "in_flight"), text(*w, "failures"),
                                text(*w, "running")});
            table(out, rows, "  ");
            for (const auto* e : items(field(*pool, "ended"))) {
                const std::string by = text(*e, "replaced_by");
                out << "  ended: " << text(*e, "name") << " (pid " << text(*e, "pid") << ") " << text(*e, "exit")
                    << (text(*e, "retired") == "true" ? ", retired" : "")
                    << (by.empty() ? std::string() : ", replaced by " + by) << '\n';
            }
        }
    }
}

Status gather(zmq::context_t& context, const std::string& dir) {
    Status st;
    st.dir = dir;
    const std::size_t slash = dir.find_last_of('/');
    st.root = root_of(slash == std::string::npos ? dir : dir.substr(slash + 1));
    st.broker = ask_broker(context, dir);
    st.processes = ask_pools(context, dir);
    return st;
}

Status gather_remote(zmq::context_t& context, const std::vector<std::string>& endpoints,
                     const zmp::transport::TcpSecurity& security) {
    Status st;
    st.endpoints = endpoints;
    for (const std::string& endpoint : endpoints) {
        RemoteAnswer answer = ask_endpoint(context, endpoint, security);
        if (answer.broker) {
            if (st.broker) throw NotFound("two brokers answer (" + endpoint + " is the second): ask one at a time");
            st.broker = std::move(answer.broker);
        }
        if (answer.process) st.processes.push_back(std::move(*answer.process));
    }
    return st;
}

volatile sig_atomic_t interrupted = 0;
void on_interrupt(int) { interrupted = 1; }

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"zmp-status: what a running zmp program is doing — its processes, objects and pools"};
    std::optional<pid_t> pid;
    std::string run_dir;
    bool as_json = false;
    std::optional<double> watch;
    std::vector<std::string> endpoints;
    std::string authkey_file;
    auto* pid_option = app.add_option("-p,--pid", pid, "the root process of the program");
    auto* dir_option =
        app.add_option("-d,--run-dir", run_dir, "the program's run directory (zmp-<pid>-XXXXXX)")->excludes(pid_option);
    auto* key_option = app.add_option("-k,--authkey-file", authkey_file, "the program's authkey (for --connect)");
    app.add_option("-c,--connect", endpoints,
                   "a tcp endpoint of a program on any host: its broker (zmp::serve, zmp-broker) or a pool that "
                   "binds tcp; may be repeated")
        ->excludes(pid_option)
        ->excludes(dir_option)
        ->needs(key_option);
    app.add_flag("--json", as_json, "print JSON (one document per refresh) instead of tables");
    app.add_option("-w,--watch", watch, "refresh every SECONDS until the program ends")
        ->expected(0, 1)
        ->default_str("1")
        ->check(CLI::PositiveNumber);
    app.set_help_flag("-h,--help", "print this help and exit");
    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        app.exit(e);
        return 2;
    }
    // "--watch" alone refreshes every second.
    if (app.count("--watch") > 0 && !watch) watch = 1.0;

    zmq::context_t context;
    std::string dir;
    std::optional<zmp::transport::TcpSecurity> security;
    try {
        if (endpoints.empty()) {
            dir = find_run(pid, run_dir);
        } else {
            security = zmp::transport::TcpSecurity::curve(zmp::transport::read_authkey_file(authkey_file));
        }
    } catch (const std::exception& e) {
        std::cerr << "zmp-status: " << e.what() << '\n';
        return 1;
    }
    struct sigaction action {};
    action.sa_handler = on_interrupt;
    ::sigemptyset(&action.sa_mask);
    ::sigaction(SIGINT, &action, nullptr);
    ::sigaction(SIGTERM, &action, nullptr);
    for (bool first = true;; first = false) {
        Status st;
        try {
            st = security ? gather_remote(context, endpoints, *security) : gather(context, dir);
        } catch (const zmp::AuthenticationError& e) {
            std::cerr << "zmp-status: AuthenticationError: " << e.what() << '\n';
            return 1;
        } catch (const std::exception& e) {
            if (security && !first) return 0;  // watching, and the program has ended
            std::cerr << "zmp-status: " << e.what() << '\n';
            return 1;
        }
        if (!security && !st.broker && (first || !has_broker(dir))) {
            if (first) {
                std::cerr << "zmp-status: the broker in " << dir << " did not answer\n";
                return 1;
            }
            return 0;  // watching, and the program has ended
        }
        std::ostringstream out;
        if (watch && !as_json) out << "\033[H\033[2J";
        as_json ? print_json(out, st) : print_table(out, st);
        std::cout << out.str() << std::flush;
        if (!watch) return 0;
        const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(*watch);
        while (std::chrono::steady_clock::now() < until && !interrupted)
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        if (interrupted) return 0;
    }
}
