#pragma once
// The shared state behind zmp::Process handles: what the child is to be (name, daemon, target),
// how it was started (its Popen) and how it ended. The runtime tracks started children through
// their TrackedChild face (runtime/children.hpp), to finish them when this process exits.

#include <sys/types.h>

#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "process/popen.hpp"
#include "runtime/children.hpp"
#include "zmp/process.hpp"

namespace zmp::detail {

struct ProcessState final : TrackedChild {
    enum class Role { child, current };

    mutable std::mutex mutex;
    Role role = Role::child;
    pid_t creator = 0;  // the process that may start, join and signal it
    std::string name;
    bool daemon = false;
    std::vector<int> identity;
    std::optional<StartMethod> method;  // empty: the default, decided by start()
    std::function<void()> target;       // dropped after start()
    TravelTarget travel;                // how the target reaches a spawn or forkserver child
    std::unique_ptr<Popen> popen;       // set by start()
    std::optional<int> exitcode;        // cached once known
    bool closed = false;

    /// Exit code if ended; reaps. Caller holds `mutex`.
    std::optional<int> poll_locked();

    // TrackedChild, for this process's exit path.
    bool is_daemon() const override { return daemon; }
    bool is_alive() override;
    void terminate() override;
    void join() override;
    std::string describe() const override;
};

/// What the start methods need of a Process beyond its public face.
struct ProcessAccess {
    /// Sets the callable a rebuilt process runs (spawn and forkserver children).
    static void set_local_target(Process& process, std::function<void()> target);
};

}  // namespace zmp::detail
