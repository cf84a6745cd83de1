#include "process/forkserver.hpp"

#include <dlfcn.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <unordered_map>

#include "process/bootstrap.hpp"
#include "process/popen.hpp"
#include "runtime/pidfd.hpp"
#include "runtime/stdio.hpp"
#include "zmp/errors.hpp"
#include "zmp/transport/codec.hpp"
#include "zmp/transport/fd_channel.hpp"

namespace zmp::detail {

sockaddr_un forkserver_address(const std::string& path) {
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    if (path.size() >= sizeof address.sun_path) throw ValueError("fork server path too long: " + path);
    std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
    return address;
}

[[noreturn]] void forkserver_main(int handshake_fd) {
    transport::FdChannel handshake(handshake_fd);
    transport::ChannelMessage message;
    if (!handshake.recv(message)) ::_exit(1);
    ForkServerRequest request;
    try {
        request = transport::decode_as<ForkServerRequest>(message.data.get(), message.size);
    } catch (const std::exception&) {
        ::_exit(1);
    }
    const std::string& path = request.path;
    // Python's preload imports modules; here the libraries are loaded once, before any child is
    // forked: their code and their registrations (ZMP_REGISTER, ZMP_TASK...) are in every child.
    for (const std::string& library : request.preload) {
        if (::dlopen(library.c_str(), RTLD_NOW | RTLD_GLOBAL) == nullptr) {
            const char* why = ::dlerror();
            std::string reason = "cannot preload ";
            reason += library;
            reason += ": ";
            reason += why != nullptr ? why : "unknown error";
            try {
                handshake.send(reason.data(), reason.size());
            } catch (const ProcessError&) {
            }
            ::_exit(1);
        }
    }

    // Children are reaped as SIGCHLD arrives through a signalfd; the loop stays single-threaded.
    sigset_t chld, previous;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    ::sigprocmask(SIG_BLOCK, &chld, &previous);
    const int signals = ::signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
    const int listener = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const sockaddr_un address = forkserver_address(path);
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
                // The child keeps nothing of the server's, unwritten output included.
                discard_inherited_stdio();
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
