#pragma once
// What every pool worker does with a request of tasks ([0, definitions, tasks], dispatcher.hpp):
// resolves the functions it names, runs the tasks in order, and sends their results back in
// batches — never later than about a millisecond after a task finishes. A local worker (over its
// socket pair) and a worker joined over tcp (join.cpp) differ only in how the results travel.

#include <sys/uio.h>

#include <msgpack.hpp>

#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "pool/dispatcher.hpp"

namespace zmp::detail {

/// A function slot as the dispatcher defined it: what it resolved to here, or why it did not.
struct TaskSlot {
    const void* function = nullptr;
    Trampoline trampoline = nullptr;
    std::exception_ptr error;  // the function cannot run here: every task naming it fails with this
};

/// The function `id` stands for in this worker: by registered name only when `by_name_only` (a
/// worker of another build than the pool's, where addresses mean nothing), else as resolve()
/// finds it. ValueError naming the task and `worker` when it is not here.
std::pair<const void*, Trampoline> resolve_task(const FunctionId& id, bool by_name_only, const std::string& worker);

/// Runs a pool's initializer (resolved as resolve_task() does). Returns null when it succeeded,
/// else the message telling the dispatcher that it failed ([1, ErrorRecord]).
std::optional<msgpack::sbuffer> run_initializer(const WorkerInit& init, bool by_name_only, const std::string& worker);

/// Sends one message made of `parts` to the dispatcher.
using SendParts = std::function<void(std::span<const iovec> parts)>;

class TaskServer {
public:
    /// `status`: the worker's status page, if it has one. `worker`: its name in error messages.
    /// `by_name_only`: functions are found by registered name only (another build's worker).
    TaskServer(SendParts send, StatusPage* status, std::string worker, bool by_name_only);
    ~TaskServer();
    TaskServer(const TaskServer&) = delete;
    TaskServer& operator=(const TaskServer&) = delete;

    /// Runs one request. Throws ProtocolError for a request it cannot read at all; a task that
    /// fails is reported to the dispatcher instead.
    void serve(const msgpack::object& request);

private:
    class Outgoing;
    std::unique_ptr<Outgoing> outgoing_;
    StatusPage* status_;
    std::string worker_;
    bool by_name_only_;
    std::vector<TaskSlot> slots_;
    msgpack::sbuffer chunk_results_;
};

}  // namespace zmp::detail
