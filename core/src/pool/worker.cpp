// A pool worker: runs the initializer, then serves batches of tasks from its link until end of
// stream. Results go back in batches too, but never later than about a millisecond after a task
// finishes, so that long tasks report one by one.
#include <chrono>
#include <vector>

#include "pipe/connection.hpp"
#include "pool/dispatcher.hpp"
#include "travel/fd_passing.hpp"
#include "process/child.hpp"
#include "queue/feeder.hpp"
#include <unistd.h>
#include "zmp/exceptions.hpp"
#include "zmp/transport/codec.hpp"

namespace zmp::detail {
namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kFlushAfter = std::chrono::milliseconds(1);

struct Resolved {
    const void* function = nullptr;
    Trampoline trampoline = nullptr;
};

// Results of the tasks done since the last send, and the time spent on them.
class Outgoing {
public:
    explicit Outgoing(transport::FdChannel& link) : link_(link) {}

    void add_result(std::uint64_t id, const char* packed_results, std::size_t size) {
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
        link_.send(std::span<const iovec>(parts, 3));
        entries_.clear();
        count_ = 0;
        busy_ = {};
    }

private:
    transport::FdChannel& link_;
    msgpack::sbuffer entries_;
    std::uint32_t count_ = 0;
    Clock::duration busy_{};
};

}  // namespace

void pool_worker_main(Connection link_handle, WorkerInit init) {
    transport::FdChannel& link = channel_of(link_handle);
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
        try {
            auto [function, trampoline] = resolve(init.function);
            transport::Decoded args = transport::decode(init.args.data(), init.args.size());
            trampoline(function, args.get(), nullptr);
        } catch (...) {
            msgpack::sbuffer message;
            msgpack::packer<msgpack::sbuffer> out(message);
            out.pack_array(2);
            out.pack(1);
            out.pack(capture_current_exception());
            link.send(message.data(), message.size());
            return;
        }
    }

    std::vector<Resolved> slots;
    msgpack::sbuffer chunk_results;
    Outgoing outgoing(link);
    for (;;) {
        if (!link.recv(request)) return;  // end of stream: this worker retires
        // Descriptors that came with a task are offered to the Connections among its arguments;
        // the rest are closed when this message is done.
        FdSupply supply(std::move(request.fds));
        request.fds.clear();
        transport::Decoded decoded = transport::decode(request.data.get(), request.size);
        const msgpack::object& message = decoded.get();
        if (message.type != msgpack::type::ARRAY || message.via.array.size != 3) {
            throw ProtocolError("malformed request from the pool dispatcher");
        }
        for (const auto& def :
             transport::convert<std::vector<std::pair<std::uint32_t, FunctionId>>>(message.via.array.ptr[1])) {
            if (slots.size() <= def.first) slots.resize(def.first + 1);
            auto [function, trampoline] = resolve(def.second);
            slots[def.first] = {function, trampoline};
        }
        const msgpack::object& tasks = message.via.array.ptr[2];
        if (tasks.type != msgpack::type::ARRAY) throw ProtocolError("malformed task list from the pool dispatcher");
        auto last_send = Clock::now();
        for (std::uint32_t t = 0; t < tasks.via.array.size; ++t) {
            const msgpack::object& task = tasks.via.array.ptr[t];
            if (task.type != msgpack::type::ARRAY || task.via.array.size != 3) {
                throw ProtocolError("malformed task from the pool dispatcher");
            }
            const auto id = transport::convert<std::uint64_t>(task.via.array.ptr[0]);
            const auto slot = transport::convert<std::uint32_t>(task.via.array.ptr[1]);
            const msgpack::object& args = task.via.array.ptr[2];
            const auto started = Clock::now();
            status.set_running(id);
            try {
                if (slot >= slots.size() || slots[slot].function == nullptr) {
                    throw ProtocolError("a task names a function the dispatcher never defined");
                }
                if (args.type != msgpack::type::ARRAY) throw ProtocolError("a task's arguments are not an array");
                // Python's chunk semantics: the whole chunk fails with its first exception.
                chunk_results.clear();
                msgpack::packer<msgpack::sbuffer> out(chunk_results);
                out.pack_array(args.via.array.size);
                for (std::uint32_t i = 0; i < args.via.array.size; ++i) {
                    slots[slot].trampoline(slots[slot].function, args.via.array.ptr[i], &out);
                }
                outgoing.add_result(id, chunk_results.data(), chunk_results.size());
            } catch (const SystemExit&) {
                outgoing.send();  // zmp::exit() in a task ends this worker, as it would a Process
                throw;
            } catch (...) {
                outgoing.add_error(id, capture_current_exception());
            }
            status.set_running(0);
            const auto finished = Clock::now();
            outgoing.add_busy(finished - started);
            if (finished - last_send >= kFlushAfter) {
                outgoing.send();
                last_send = finished;
            }
        }
        outgoing.send();
    }
}

}  // namespace zmp::detail
