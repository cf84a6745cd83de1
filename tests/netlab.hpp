#pragma once
// NetLab: several "hosts" on one machine, for the multihost tests. Each host is a network
// namespace with its own loopback and one interface, cabled by a veth pair to a bridge in a
// "switch" namespace; nothing is attached to the machine's own network, so all traffic stays
// inside. Cutting a host takes its switch port down: its own interface stays up, so neither side
// gets a FIN or a RST — packets just vanish, as when a host loses power or its cable.
//
//     NetLab lab({"head", "a", "b"});
//     if (!lab) SKIP_TEST(lab.why());              // not root, no namespaces: say so
//     lab.enter("head");                            // this process (before any ZeroMQ context)
//     pid_t w = lab.spawn("a", {worker, "--connect", "tcp://" + lab.address("head") + ":5555"});
//     lab.cut("a");                                 // the host vanishes
//
// Needs root (CAP_NET_ADMIN) and iproute2's `ip`. Namespaces are named zmp-<pid>-<host>, removed
// by the destructor; ones left by a test that was killed are removed by the next lab.

#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "test_util.hpp"

namespace test_util {

/// Prints the marker CTest's SKIP_REGULAR_EXPRESSION looks for, then ends the test process: a test
/// that cannot run here is reported as skipped, never as passed.
[[noreturn]] inline void skip_test(const std::string& why) {
    std::printf("ZMP-SKIP: %s\n", why.c_str());
    std::fflush(stdout);
    std::_Exit(0);
}

class NetLab {
public:
    explicit NetLab(std::vector<std::string> hosts) {
        if (::geteuid() != 0) {
            why_ = "network namespaces need root (CAP_NET_ADMIN)";
            return;
        }
        if (run_command("ip -V 2>&1").status != 0) {
            why_ = "iproute2's `ip` is not installed";
            return;
        }
        remove_stale();
        prefix_ = "zmp-" + std::to_string(::getpid()) + "-";
        if (!ip("netns add " + name("sw")) || !ip("-n " + name("sw") + " link add br0 type bridge") ||
            !ip("-n " + name("sw") + " link set br0 up") || !ip("-n " + name("sw") + " link set lo up")) {
            why_ = "cannot make network namespaces here: " + last_error_;
            return;
        }
        int n = 1;
        for (const std::string& host : hosts) {
            const std::string ns = name(host);
            const std::string address = "10.231.0." + std::to_string(n);
            const std::string inside = "eth0", port = "p" + std::to_string(n);
            if (!ip("netns add " + ns) || !ip("-n " + ns + " link set lo up") ||
                !ip("link add " + port + "-" + std::to_string(::getpid()) + " type veth peer name " + inside + "-" +
                    std::to_string(::getpid())) ||
                !ip("link set " + port + "-" + std::to_string(::getpid()) + " netns " + name("sw") + " name " + port) ||
                !ip("link set " + inside + "-" + std::to_string(::getpid()) + " netns " + ns + " name " + inside) ||
                !ip("-n " + name("sw") + " link set " + port + " master br0") ||
                !ip("-n " + name("sw") + " link set " + port + " up") ||
                !ip("-n " + ns + " addr add " + address + "/24 dev " + inside) ||
                !ip("-n " + ns + " link set " + inside + " up")) {
                why_ = "cannot cable host " + host + ": " + last_error_;
                return;
            }
            hosts_[host] = Host{address, port};
            ++n;
        }
        ok_ = true;
    }

    ~NetLab() {
        for (pid_t pid : spawned_) {
            ::kill(pid, SIGKILL);
            ::waitpid(pid, nullptr, 0);
        }
        if (prefix_.empty()) return;
        for (const auto& [host, info] : hosts_) (void)ip("netns del " + name(host));
        (void)ip("netns del " + name("sw"));
    }
    NetLab(const NetLab&) = delete;
    NetLab& operator=(const NetLab&) = delete;

    explicit operator bool() const { return ok_; }
    const std::string& why() const { return why_; }

    /// The host's address on the lab's network (10.231.0.N).
    std::string address(const std::string& host) const { return hosts_.at(host).address; }
    /// The namespace's name, for `ip netns exec`.
    std::string name(const std::string& host) const { return prefix_ + host; }

    /// Moves the calling process into `host`'s namespace. Call it before anything makes a thread
    /// or a ZeroMQ context: only the calling thread moves, and threads made later follow it.
    void enter(const std::string& host) const {
        const int fd = ::open(("/run/netns/" + name(host)).c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0 || ::setns(fd, CLONE_NEWNET) != 0) {
            std::perror("setns");
            std::abort();
        }
        ::close(fd);
    }

    /// Runs f() in a forked child moved into `host` (before f can make a thread or a ZeroMQ
    /// context); the child exits with f's result (99 if it throws, after saying why on stderr).
    /// The caller waits for the returned pid.
    pid_t fork_into(const std::string& host, const std::function<int()>& f) const {
        const pid_t pid = ::fork();
        if (pid == 0) {
            enter(host);
            int code = 99;
            try {
                code = f();
            } catch (const std::exception& e) {
                std::fprintf(stderr, "%s: %s\n", host.c_str(), e.what());
            }
            ::_exit(code);
        }
        return pid;
    }

    /// Starts `argv` inside `host` (stdout and stderr appended to `log`, if given); the lab kills
    /// it at the end if it still runs.
    pid_t spawn(const std::string& host, const std::vector<std::string>& argv, const std::string& log = {}) {
        const std::string ns = "/run/netns/" + name(host);
        const pid_t pid = ::fork();
        if (pid == 0) {
            const int fd = ::open(ns.c_str(), O_RDONLY | O_CLOEXEC);
            if (fd < 0 || ::setns(fd, CLONE_NEWNET) != 0) ::_exit(126);
            exec_logged(argv, log);
        }
        if (pid > 0) spawned_.push_back(pid);
        return pid;
    }

    /// The host vanishes from the network (its switch port goes down: no FIN, no RST), or comes back.
    bool cut(const std::string& host) { return ip("-n " + name("sw") + " link set " + hosts_.at(host).port + " down"); }
    bool heal(const std::string& host) { return ip("-n " + name("sw") + " link set " + hosts_.at(host).port + " up"); }

private:
    struct Host {
        std::string address;
        std::string port;
    };

    bool ip(const std::string& args) {
        const CommandResult r = run_command("ip " + args + " 2>&1");
        if (r.status != 0) last_error_ = "`ip " + args + "`: " + r.out;
        return r.status == 0;
    }

    // Namespaces of labs whose test process is gone.
    void remove_stale() {
        DIR* dir = ::opendir("/run/netns");
        if (dir == nullptr) return;
        std::vector<std::string> stale;
        while (dirent* entry = ::readdir(dir)) {
            const std::string n = entry->d_name;
            if (!n.starts_with("zmp-")) continue;
            const pid_t owner = static_cast<pid_t>(std::atoi(n.c_str() + 4));
            if (owner > 0 && !pid_exists(owner)) stale.push_back(n);
        }
        ::closedir(dir);
        for (const std::string& n : stale) (void)ip("netns del " + n);
    }

    std::string prefix_;
    std::map<std::string, Host> hosts_;
    std::vector<pid_t> spawned_;
    std::string why_;
    std::string last_error_;
    bool ok_ = false;
};

}  // namespace test_util
