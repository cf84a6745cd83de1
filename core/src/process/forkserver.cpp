#include "process/forkserver.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>
#include <unordered_map>

#include "process/bootstrap.hpp"
#include "runtime/runtime.hpp"
#include "zmp/transport/fd_channel.hpp"

namespace zmp::detail {
namespace {

constexpr const char* kService = "forkserver";

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
        if (::syscall(SYS_pidfd_send_signal, pidfd_, signal, nullptr, 0) != 0 && errno != ESRCH) {
            throw_os_error("pidfd_send_signal", errno);
        }
    }

private:
    pid_t pid_;
    int pidfd_;
    transport::FdChannel status_;
    std::optional<int> exitcode_;
};

std::mutex client_mutex;
pid_t started_server = 0;  // the server this process started, reaped when it is replaced
int servers_started = 0;

sockaddr_un unix_address(const std::string& path) {
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    if (path.size() >= sizeof address.sun_path) throw ValueError("fork server path too long: " + path);
    std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
    return address;
}

int connect_to(const std::string& path) {
    const sockaddr_un address = unix_address(path);
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

std::string start_server() {
    Runtime& rt = Runtime::instance();
    if (started_server > 0) {
        int status;
        ::waitpid(started_server, &status, WNOHANG);
        started_server = 0;
    }
    const std::string path = rt.run_dir() + "/fs-" + std::to_string(rt.pid()) + "-" + std::to_string(++servers_started);
    auto [mine, theirs] = transport::FdChannel::pair();
    const pid_t pid = spawn_self("ZMP_FORKSERVER_FD", theirs.fd());
    theirs.close();
    transport::ChannelMessage reply;
    bool ready = false;
    try {
        mine.send(path.data(), path.size());
        ready = mine.recv(reply) && reply.size == 1;
    } catch (const ProcessError&) {
    }
    if (!ready) {
        int status;
        ::waitpid(pid, &status, 0);
        throw OSError("the fork server did not start (its main() must call zmp::init(argc, argv) first)");
    }
    started_server = pid;
    rt.set_service(kService, path);
    return path;
}

}  // namespace

std::optional<pid_t> forkserver_pid() {
    std::lock_guard lock(client_mutex);
    if (started_server <= 0) return std::nullopt;
    return started_server;
}

std::unique_ptr<Popen> forkserver_start(const ProcessState& st, const Process& process) {
    Runtime& rt = Runtime::instance();
    if (rt.argv().empty()) {
        throw ValueError("the forkserver start method needs zmp::init(argc, argv) as the first line of main()");
    }
    BootstrapMessage boot = make_bootstrap(st, process, StartMethod::forkserver);
    std::lock_guard lock(client_mutex);
    std::string address = rt.service(kService);
    for (int attempt = 0;; ++attempt) {
        if (address.empty()) address = start_server();
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

[[noreturn]] void forkserver_main(int handshake_fd) {
    transport::FdChannel handshake(handshake_fd);
    transport::ChannelMessage request;
    if (!handshake.recv(request)) ::_exit(1);
    const std::string path(request.data.get(), request.size);

    // Children are reaped as SIGCHLD arrives through a signalfd; the loop stays single-threaded.
    sigset_t chld, previous;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    ::sigprocmask(SIG_BLOCK, &chld, &previous);
    const int signals = ::signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
    const int listener = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const sockaddr_un address = unix_address(path);
    ::unlink(path.c_str());
    if (signals < 0 || listener < 0 ||
        ::bind(listener, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0 ||
        ::listen(listener, 128) != 0) {
        ::_exit(1);
    }
    // The server lives as long as the process that started it.
    const int starter = open_pidfd(::getppid());
    if (starter < 0) ::_exit(0);
    const char ready = 'R';
    handshake.send(&ready, 1);
    handshake.close();

    std::unordered_map<pid_t, int> waiting;  // child -> the connection that awaits its exit code
    for (;;) {
        pollfd fds[3] = {{listener, POLLIN, 0}, {signals, POLLIN, 0}, {starter, POLLIN, 0}};
        if (::poll(fds, 3, -1) < 0) {
            if (errno == EINTR) continue;
            ::_exit(1);
        }
        if (fds[2].revents != 0) {
            ::unlink(path.c_str());
            ::_exit(0);
        }
        if (fds[1].revents != 0) {
            signalfd_siginfo info;
            while (::read(signals, &info, sizeof info) == sizeof info) {
            }
            for (;;) {
                int status = 0;
                const pid_t done = ::waitpid(-1, &status, WNOHANG);
                if (done <= 0) break;
                auto it = waiting.find(done);
                if (it == waiting.end()) continue;
                transport::FdChannel conn(it->second);
                const std::int32_t code = exitcode_from_status(status);
                try {
                    conn.send(&code, sizeof code);
                } catch (const ProcessError&) {
                    // whoever asked is gone
                }
                waiting.erase(it);
            }
        }
        if (fds[0].revents != 0) {
            const int fd = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
            if (fd < 0) continue;
            transport::FdChannel conn(fd);
            transport::ChannelMessage start;
            try {
                if (!conn.recv(start)) continue;
            } catch (const ProcessError&) {
                continue;
            }
            const pid_t pid = ::fork();
            if (pid == 0) {
                // The child keeps nothing of the server's.
                ::close(listener);
                ::close(signals);
                ::close(starter);
                for (auto& [child, c] : waiting) ::close(c);
                conn.close();
                ::sigprocmask(SIG_SETMASK, &previous, nullptr);
                run_bootstrapped_child(std::move(start), nullptr);
            }
            for (int f : start.fds) ::close(f);
            if (pid < 0) continue;
            const int pidfd = open_pidfd(pid);
            const std::int32_t announced = pid;
            try {
                conn.send(&announced, sizeof announced, std::span<const int>(&pidfd, pidfd >= 0 ? 1 : 0));
            } catch (const ProcessError&) {
            }
            if (pidfd >= 0) ::close(pidfd);
            waiting[pid] = conn.release();
        }
    }
}

}  // namespace zmp::detail
