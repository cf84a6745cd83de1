// The forkserver start method, the client side: a start request goes to the run's fork server
// (forkserver.hpp), which is started, or started again if it has gone, on demand.
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "base/log.hpp"
#include "process/bootstrap.hpp"
#include "process/exec_self.hpp"
#include "process/forkserver.hpp"
#include "process/starter.hpp"
#include "runtime/identity.hpp"
#include "runtime/pidfd.hpp"
#include "runtime/process_global.hpp"
#include "runtime/run.hpp"
#include "runtime/run_directory.hpp"
#include "zmp/context.hpp"
#include "zmp/transport/codec.hpp"
#include "zmp/transport/fd_channel.hpp"

namespace zmp::detail {
namespace {

// A child of the fork server, as the process that asked for it sees it: signalled through the
// pidfd the server sent, its exit code read from the request's connection.
class ForkServerPopen final : public Popen {
public:
    ForkServerPopen(pid_t pid, int pidfd, transport::FdChannel status)
        : pid_(pid), pidfd_(pidfd), status_(std::move(status)) {}
    ~ForkServerPopen() override {
        if (pidfd_ >= 0) ::close(pidfd_);
    }
    pid_t pid() const override { return pid_; }
    int sentinel() const override { return status_.is_open() ? status_.fd() : pidfd_; }

    std::optional<int> poll() override {
        if (exitcode_) return exitcode_;
        if (status_.is_open() && status_.poll(0)) {
            transport::ChannelMessage message;
            bool got = false;
            try {
                got = status_.recv(message);
            } catch (const ProcessError&) {
            }
            status_.close();
            if (got && message.size == sizeof(std::int32_t)) {
                std::int32_t code;
                std::memcpy(&code, message.data.get(), sizeof code);
                exitcode_ = code;
                return exitcode_;
            }
            // The server ended without telling us: from here on, watch the child itself.
        }
        // With the server gone its exit status is lost; Python reports 255 then too.
        if (!status_.is_open() && wait_fd_readable(pidfd_, Deadline::now())) exitcode_ = 255;
        return exitcode_;
    }

    void send_signal(int signal) override {
        if (exitcode_) return;
        signal_through_pidfd(pidfd_, signal);
    }

private:
    pid_t pid_;
    int pidfd_;
    transport::FdChannel status_;
    std::optional<int> exitcode_;
};

// This process's side of the fork server. Its mutex is held across fork(), so that a child forked
// while another thread starts a child can start its own.
struct Client {
    std::mutex mutex;
    pid_t started_server = 0;  // the server this process started, reaped when it is replaced
    int servers_started = 0;
    std::vector<std::string> preload;  // libraries each new server loads (set_forkserver_preload)
};

Client& client() { return process_global<Client, ForkLayer::service>(); }

int connect_to(const std::string& path) {
    const sockaddr_un address = forkserver_address(path);
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) throw_os_error("socket", errno);
    int rc;
    do {
        rc = ::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address);
    } while (rc != 0 && errno == EINTR);
    if (rc != 0) {
        ::close(fd);
        return -1;
    }
    return fd;
}

// Caller holds the client's mutex.
std::string start_server(Client& c) {
    if (c.started_server > 0) {
        int status;
        ::waitpid(c.started_server, &status, WNOHANG);
        c.started_server = 0;
    }
    const std::string path = run_directory().path() + "/fs-" + std::to_string(this_process().pid()) + "-" +
                             std::to_string(++c.servers_started);
    auto [mine, theirs] = transport::FdChannel::pair();
    const pid_t pid = exec_self("ZMP_FORKSERVER_FD", theirs.fd());
    theirs.close();
    transport::ChannelMessage reply;
    bool ready = false;
    try {
        const msgpack::sbuffer request = transport::encode(ForkServerRequest{path, c.preload});
        mine.send(request.data(), request.size());
        ready = mine.recv(reply) && reply.size == 1;
    } catch (const ProcessError&) {
    }
    if (!ready) {
        int status;
        ::waitpid(pid, &status, 0);
        if (reply.size > 1)
            throw OSError("the fork server did not start: " + std::string(reply.data.get(), reply.size));
        throw OSError("the fork server did not start (its main() must call zmp::init(argc, argv) first)");
    }
    c.started_server = pid;
    this_run().set_service(kForkServerService, path);

    return path;
}

class ForkServerStarter final : public Starter {
public:
    std::unique_ptr<Popen> start(const ProcessState& st, Process& process) override;
};

}  // namespace

std::optional<pid_t> forkserver_pid() {
    Client& c = client();
    std::lock_guard lock(c.mutex);
    if (c.started_server <= 0) return std::nullopt;
    return c.started_server;
}

std::unique_ptr<Popen> ForkServerStarter::start(const ProcessState& st, Process& process) {
    if (this_run().argv().empty()) {
        throw ValueError("the forkserver start method needs zmp::init(argc, argv) as the first line of main()");
    }
    BootstrapMessage boot = make_bootstrap(st, process, StartMethod::forkserver);
    Client& c = client();
    std::lock_guard lock(c.mutex);
    std::string address = this_run().service(kForkServerService);
    for (int attempt = 0;; ++attempt) {
        if (address.empty()) {
            address = start_server(c);
            if (attempt > 0 && log_enabled(LogLevel::info)) {
                log_record(LogLevel::info, "the fork server was gone: a new one started (pid " +
                                               std::to_string(c.started_server) + ")");
            }
        }
        const int fd = connect_to(address);
        if (fd < 0) {
            // The server is gone (killed, or it ended with the process that started it).
            if (attempt > 0) throw_os_error("cannot reach the fork server", errno);
            address.clear();
            continue;
        }
        transport::FdChannel conn(fd);
        try {
            conn.send(boot.bytes.data(), boot.bytes.size(), boot.fds);
        } catch (const OSError&) {
            if (attempt > 0) throw;
            address.clear();
            continue;
        }
        transport::ChannelMessage reply;
        bool got = false;
        try {
            got = conn.recv(reply);
        } catch (const ProcessError&) {
        }
        if (!got || reply.size != sizeof(std::int32_t) || reply.fds.size() != 1) {
            for (int f : reply.fds) ::close(f);
            throw OSError("the fork server ended while starting " + st.name);
        }
        std::int32_t pid;
        std::memcpy(&pid, reply.data.get(), sizeof pid);
        return std::make_unique<ForkServerPopen>(pid, reply.fds[0], std::move(conn));
    }
}

Starter& forkserver_starter() {
    static Starter* made = new ForkServerStarter();  // never destroyed: children may start during exit
    return *made;
}

}  // namespace zmp::detail

namespace zmp {

void set_forkserver_preload(const std::vector<std::string>& libraries) {
    for (const std::string& library : libraries) {
        if (library.empty() || library.find('\0') != std::string::npos) {
            throw ValueError("set_forkserver_preload: a library name must be a non-empty path without NUL bytes");
        }
    }
    detail::Client& c = detail::client();
    std::lock_guard lock(c.mutex);
    c.preload = libraries;
}

}  // namespace zmp
