#pragma once
// The run this process belongs to: the root that started it, the authkey every process of the run
// shares, the services the run's processes share (the broker's endpoint, the fork server's
// address...) and the argv that spawn and the fork server run this binary with. Forked children
// inherit it; spawn and forkserver children adopt() it from their bootstrap.
//
//     if (this_run().is_root()) ...;
//     this_run().service("broker");

#include <sys/types.h>

#include "zmp/transport/security.hpp"

#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace zmp::detail {

using Authkey = transport::Authkey;

class ThisRun {
public:
    pid_t root_pid() const { return root_pid_; }
    /// True in the run's root process (not in any child, forked or not).
    bool is_root() const;
    /// 32 random bytes made by the root.
    const Authkey& authkey() const { return authkey_; }

    /// Named values every process of the run shares: inherited by forked children and handed to
    /// spawn and forkserver children.
    void set_service(const std::string& key, std::string value);
    /// The value of `key`, or an empty string.
    std::string service(const std::string& key) const;
    std::map<std::string, std::string> services() const;
    /// The endpoint of the broker that serves this run's coordination objects (the service
    /// "broker"): empty until the root starts its embedded broker or someone sets one.
    std::string broker_endpoint() const { return service("broker"); }
    void set_broker_endpoint(std::string endpoint) { set_service("broker", std::move(endpoint)); }

    /// argv as zmp::init() recorded it; spawn and the fork server run this binary with it.
    const std::vector<std::string>& argv() const { return argv_; }
    void set_argv(std::vector<std::string> argv) { argv_ = std::move(argv); }

    /// What a spawn or forkserver child takes over from its run before it becomes itself.
    void adopt(pid_t root_pid, const Authkey& authkey, std::map<std::string, std::string> services);

    /// Made once per process, by this_run() (runtime/process_global.hpp).
    ThisRun();
    ThisRun(const ThisRun&) = delete;
    ThisRun& operator=(const ThisRun&) = delete;
    std::mutex& fork_mutex() { return mutex_; }

private:
    mutable std::mutex mutex_;  // the services
    pid_t root_pid_;
    Authkey authkey_{};
    std::map<std::string, std::string> services_;
    std::vector<std::string> argv_;
};

/// This process's run, made on first use (never destroyed); a process that nobody started is the
/// root of a run of its own.
ThisRun& this_run();

}  // namespace zmp::detail
