// A pool worker: runs the initializer, then serves batches of tasks from its link until end of
// stream. Results go back in batches too, but never later than about a millisecond after a task
// finishes, so that long tasks report one by one.
#include <unistd.h>

#include <chrono>
#include <exception>
#include <string>
#include <tuple>
#include <vector>

#include "pipe/connection.hpp"
#include "pool/dispatcher.hpp"
#include "pool/task_server.hpp"
#include "runtime/identity.hpp"
#include "process/child.hpp"
#include "queue/feeder.hpp"
#include "travel/fd_passing.hpp"
#include "zmp/errors.hpp"
#include "zmp/exceptions.hpp"
#include "zmp/transport/codec.hpp"

namespace zmp::detail {
namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kFlushAfter = std::chrono::milliseconds(1);

// The link this process serves as a pool worker, while it does (see pool_worker_link()).
transport::FdChannel* serving_link = nullptr;

// Reads the definitions of a request into `slots`. A definition that cannot be read or whose
// slot is beyond kMaxFunctionSlots is returned as an error: no slot can be trusted then, so
// every task of the request fails with it.
// `by_name_only`: this worker is another build than the dispatcher's (a worker joined over tcp):
// a function is found by its registered name, never by an address that means nothing here.
std::exception_ptr define_slots(const msgpack::object& definitions, std::vector<TaskSlot>& slots, bool by_name_only,
                                const std::string& worker) {
    if (definitions.type != msgpack::type::ARRAY) throw ProtocolError("malformed request from the pool dispatcher");
    std::exception_ptr bad;
    for (std::uint32_t i = 0; i < definitions.via.array.size; ++i) {
        try {
            const msgpack::object& def = definitions.via.array.ptr[i];
            if (def.type != msgpack::type::ARRAY || def.via.array.size != 2) {
                throw ProtocolError("malformed function definition from the pool dispatcher");
            }
            const auto index = transport::convert<std::uint32_t>(def.via.array.ptr[0]);
            if (index >= kMaxFunctionSlots) {
                throw ProtocolError("the pool dispatcher defined function slot " + std::to_string(index) +
                                    ", beyond the limit of " + std::to_string(kMaxFunctionSlots));
            }
            const auto id = transport::convert<FunctionId>(def.via.array.ptr[1]);
            if (slots.size() <= index) slots.resize(index + 1);
            TaskSlot& slot = slots[index];
            slot = {};
            try {
                std::tie(slot.function, slot.trampoline) = resolve_task(id, by_name_only, worker);
            } catch (...) {
                slot.error = std::current_exception();  // only the tasks that name it fail
            }
        } catch (const ProcessError&) {
            if (!bad) bad = std::current_exception();
        }
    }
    return bad;
}

}  // namespace

std::pair<const void*, Trampoline> resolve_task(const FunctionId& id, bool by_name_only, const std::string& worker) {
    if (!by_name_only) return resolve(id);
    if (id.name.empty()) {
        throw ValueError("worker " + worker +
                         " runs another build than the pool's and cannot run an unregistered function: register "
                         "the task with ZMP_TASK(name, fn) in both programs");
    }
    auto found = resolve_registered(id.name);
    if (!found) throw ValueError("worker " + worker + " has no task '" + id.name + "'");
    return *found;
}

std::optional<msgpack::sbuffer> run_initializer(const WorkerInit& init, bool by_name_only, const std::string& worker) {
    try {
        auto [function, trampoline] = resolve_task(init.function, by_name_only, worker);
        transport::Decoded args = transport::decode(init.args.data(), init.args.size());
        trampoline(function, args.get(), nullptr);
        return std::nullopt;
    } catch (...) {
        msgpack::sbuffer message;
        msgpack::packer<msgpack::sbuffer> out(message);
        out.pack_array(2);
        out.pack(1);
        out.pack(capture_current_exception());
        return message;
    }
}

// Results of the tasks done since the last send, and the time spent on them.
class TaskServer::Outgoing {
public:
    explicit Outgoing(SendParts send) : send_(std::move(send)) {}

    void add_result(std::uint64_t id, const char* packed_results, std::size_t size) {
        if (size > kMaxPoolMessage - kPoolFrameReserve) {
            throw ValueError("the results of a pool task take " + std::to_string(size) +
                             " bytes, beyond the pool's limit of " +
                             std::to_string(kMaxPoolMessage - kPoolFrameReserve));
        }
        if (entries_.size() + size > kMaxPoolMessage - kPoolFrameReserve) send();  // keep each message in bounds
        msgpack::packer<msgpack::sbuffer> out(entries_);
        out.pack_array(3);
        out.pack(id);
        out.pack(true);
        entries_.write(packed_results, size);
        ++count_;
    }
    void add_error(std::uint64_t id, const ErrorRecord& error) {
        msgpack::packer<msgpack::sbuffer> out(entries_);
        out.pack_array(3);
        out.pack(id);
        out.pack(false);
        out.pack(error);
        ++count_;
    }
    void add_busy(Clock::duration busy) { busy_ += busy; }
    bool empty() const { return count_ == 0; }

    void send() {
        if (count_ == 0) return;
        flush_queue_feeder();
        msgpack::sbuffer head;
        msgpack::packer<msgpack::sbuffer> out(head);
        out.pack_array(3);
        out.pack(0);
        out.pack_array(count_);
        msgpack::sbuffer tail;
        msgpack::packer<msgpack::sbuffer> tail_out(tail);
        tail_out.pack(static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(busy_).count()));
        const iovec parts[3] = {
            {head.data(), head.size()}, {entries_.data(), entries_.size()}, {tail.data(), tail.size()}};
        send_(std::span<const iovec>(parts, 3));
        entries_.clear();
        count_ = 0;
        busy_ = {};
    }

private:
    SendParts send_;
    msgpack::sbuffer entries_;
    std::uint32_t count_ = 0;
    Clock::duration busy_{};
};

TaskServer::TaskServer(SendParts send, StatusPage* status, std::string worker, bool by_name_only)
    : outgoing_(std::make_unique<Outgoing>(std::move(send))),
      status_(status),
      worker_(std::move(worker)),
      by_name_only_(by_name_only) {}

TaskServer::~TaskServer() = default;

void TaskServer::serve(const msgpack::object& message) {
    if (message.type != msgpack::type::ARRAY || message.via.array.size != 3 ||
        transport::convert<int>(message.via.array.ptr[0]) != 0) {
        throw ProtocolError("malformed request from the pool dispatcher");
    }
    Outgoing& outgoing = *outgoing_;
    std::vector<TaskSlot>& slots = slots_;
    msgpack::sbuffer& chunk_results = chunk_results_;
    const std::exception_ptr bad_definition = define_slots(message.via.array.ptr[1], slots, by_name_only_, worker_);
    const msgpack::object& tasks = message.via.array.ptr[2];
    if (tasks.type != msgpack::type::ARRAY) throw ProtocolError("malformed task list from the pool dispatcher");
    auto last_send = Clock::now();
    for (std::uint32_t t = 0; t < tasks.via.array.size; ++t) {
        const msgpack::object& task = tasks.via.array.ptr[t];
        if (task.type != msgpack::type::ARRAY || task.via.array.size != 3) {
            throw ProtocolError("malformed task from the pool dispatcher");
        }
        const auto id = transport::convert<std::uint64_t>(task.via.array.ptr[0]);
        if (id == 0) throw ProtocolError("a task from the pool dispatcher has id 0");
        const msgpack::object& args = task.via.array.ptr[2];
        const auto started = Clock::now();
        if (status_) status_->set_running(id);
        try {
            if (bad_definition) std::rethrow_exception(bad_definition);
            const auto index = transport::convert<std::uint32_t>(task.via.array.ptr[1]);
            if (index >= slots.size() || (slots[index].function == nullptr && !slots[index].error)) {
                throw ProtocolError("a task names a function the dispatcher never defined");
            }
            const TaskSlot& slot = slots[index];
            if (slot.error) std::rethrow_exception(slot.error);
            if (args.type != msgpack::type::ARRAY) throw ProtocolError("a task's arguments are not an array");
            // Python's chunk semantics: the whole chunk fails with its first exception.
            chunk_results.clear();
            msgpack::packer<msgpack::sbuffer> out(chunk_results);
            out.pack_array(args.via.array.size);
            for (std::uint32_t i = 0; i < args.via.array.size; ++i) {
                slot.trampoline(slot.function, args.via.array.ptr[i], &out);
            }
            outgoing.add_result(id, chunk_results.data(), chunk_results.size());
        } catch (const SystemExit&) {
            outgoing.send();  // zmp::exit() in a task ends this worker, as it would a Process
            throw;
        } catch (...) {
            outgoing.add_error(id, capture_current_exception());
        }
        if (status_) status_->set_running(0);
        const auto finished = Clock::now();
        outgoing.add_busy(finished - started);
        if (finished - last_send >= kFlushAfter) {
            outgoing.send();
            last_send = finished;
        }
    }
    outgoing.send();
}

transport::FdChannel* pool_worker_link() { return serving_link; }

void pool_worker_main(Connection link_handle, WorkerInit init) {
    transport::FdChannel& link = channel_of(link_handle);
    link.set_max_message(kMaxPoolMessage);
    serving_link = &link;
    struct Unserve {
        ~Unserve() { serving_link = nullptr; }
    } unserve;
    transport::ChannelMessage request;
    // The dispatcher's first message carries the status page.
    if (!link.recv(request)) return;
    if (request.fds.empty()) throw ProtocolError("the pool dispatcher's first message has no status page");
    StatusPage status(request.fds.back());
    ::close(request.fds.back());
    request.fds.pop_back();
    if (init.present) {
        FdSupply init_fds(std::move(request.fds));  // for Connections among the initargs
        request.fds.clear();
        if (auto failed = run_initializer(init, false, this_process().name())) {
            link.send(failed->data(), failed->size());
            return;
        }
    }

    TaskServer server([&link](std::span<const iovec> parts) { link.send(parts); }, &status, this_process().name(),
                      false);
    for (;;) {
        if (!link.recv(request)) return;  // end of stream: this worker retires
        // Descriptors that came with a task are offered to the Connections among its arguments;
        // the rest are closed when this message is done.
        FdSupply supply(std::move(request.fds));
        request.fds.clear();
        // What cannot be read as a request at all ends this worker (its link is dropped): the
        // dispatcher sees it go, and its tasks are dealt with as after any death.
        transport::Decoded decoded = transport::decode(request.data.get(), request.size);
        server.serve(decoded.get());
    }
}
// By name, so that a worker started from another program (set_executable) finds its entry point.
ZMP_REGISTER_AS("zmp.pool_worker_main", pool_worker_main);

}  // namespace zmp::detail
