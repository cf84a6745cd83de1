// What a pool worker reads (core/src/pool/frames.hpp, task_server.hpp): a joined worker's messages
// from the pool (read_pool_message: a welcome, a refusal, a request of tasks, the control kinds),
// and the request of tasks [0, definitions, tasks] that TaskServer::serve reads while it runs each
// task. The worker runs as one of another build (functions by registered name only: an address
// from the input must never be called), with three tasks registered here.
// Contract: reading and serving raise nothing but ProtocolError; every message the worker sends
// back is one the dispatcher reads (read_worker_message, read_result) as results for the request's
// tasks, in their order, one each, with as many values as the task has argument tuples.
#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "contract.hpp"
#include "pool/frames.hpp"
#include "pool/task_server.hpp"
#include "zmp/errors.hpp"
#include "zmp/function.hpp"
#include "zmp/transport/codec.hpp"

namespace {

int add(int a, int b) { return a + b; }
std::string repeat(std::string text, int times) {
    if (times < 0 || times > 16) throw std::invalid_argument("times out of range");
    std::string out;
    for (int i = 0; i < times; ++i) out += text;
    return out;
}
std::vector<double> scale(std::vector<double> values, double by) {
    for (double& v : values) v *= by;
    return values;
}

ZMP_TASK("add", add);
ZMP_TASK("repeat", repeat);
ZMP_TASK("scale", scale);

using zmp_fuzz::expect;
using zmp_fuzz::violated;

// The argument-tuple counts of a request's tasks, in order (empty if it is not a request).
std::vector<std::pair<std::uint64_t, std::size_t>> tasks_of(const msgpack::object& request) {
    std::vector<std::pair<std::uint64_t, std::size_t>> tasks;
    const msgpack::object& list = request.via.array.ptr[2];
    if (list.type != msgpack::type::ARRAY) return tasks;
    for (std::uint32_t i = 0; i < list.via.array.size; ++i) {
        const msgpack::object& task = list.via.array.ptr[i];
        if (task.type != msgpack::type::ARRAY || task.via.array.size != 3) break;
        const msgpack::object& args = task.via.array.ptr[2];
        std::uint64_t id = 0;
        try {
            id = zmp::transport::convert<std::uint64_t>(task.via.array.ptr[0]);
        } catch (const zmp::ProtocolError&) {
            break;
        }
        tasks.emplace_back(id, args.type == msgpack::type::ARRAY ? args.via.array.size : 0);
    }
    return tasks;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    namespace detail = zmp::detail;
    zmp::transport::Decoded decoded;
    detail::PoolMessage message;
    try {
        decoded = zmp::transport::decode(data, size);
        message = detail::read_pool_message(decoded.get());
    } catch (const zmp::ProtocolError&) {
        return 0;
    } catch (const std::exception& e) {
        violated(std::string("reading a message from the pool raised something other than ProtocolError: ") + e.what());
    }
    if (message.kind != 0) return 0;

    std::vector<std::string> sent;
    detail::TaskServer server(
        [&sent](std::span<const iovec> parts) {
            std::string whole;
            for (const iovec& part : parts) whole.append(static_cast<const char*>(part.iov_base), part.iov_len);
            sent.push_back(std::move(whole));
        },
        nullptr, "fuzz-worker", true);
    bool served = false;
    try {
        server.serve(decoded.get());
        served = true;
    } catch (const zmp::ProtocolError&) {
    } catch (const std::exception& e) {
        violated(std::string("TaskServer::serve raised something other than ProtocolError: ") + e.what());
    }

    const auto tasks = served ? tasks_of(decoded.get()) : decltype(tasks_of(decoded.get())){};
    std::size_t next = 0;  // the task the next result is for
    for (const std::string& bytes : sent) {
        try {
            zmp::transport::Decoded reply = zmp::transport::decode(bytes.data(), bytes.size());
            const detail::WorkerMessage results = detail::read_worker_message(reply.get());
            expect(results.kind == 0, "a worker sent a message other than results while serving");
            for (std::uint32_t i = 0; i < results.results->via.array.size; ++i) {
                const detail::WorkerResult result = detail::read_result(results.results->via.array.ptr[i]);
                expect(result.status != detail::WorkerResult::Status::bad_status, "a result's status is not a boolean");
                if (result.status == detail::WorkerResult::Status::error) {
                    expect(result.error.has_value(), "a worker's error record does not decode");
                }
                if (!served) continue;  // the tasks' shapes were not all readable
                expect(next < tasks.size(), "more results than tasks");
                expect(result.id == tasks[next].first, "a result for another task than the next one");
                if (result.status == detail::WorkerResult::Status::values) {
                    expect(result.values->type == msgpack::type::ARRAY &&
                               result.values->via.array.size == tasks[next].second,
                           "a task's values do not match its argument tuples");
                }
                ++next;
            }
        } catch (const zmp::ProtocolError& e) {
            violated(std::string("the dispatcher cannot read what the worker sent: ") + e.what());
        }
    }
    if (served) expect(next == tasks.size(), "a task of a request that was served has no result");
    return 0;
}
