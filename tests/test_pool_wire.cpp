// The pool's wire protocol under hand-made bad frames, on real links: a real worker process fed
// by the test acting as its dispatcher, and a real dispatcher fed by a task that writes to its own
// worker's link. Neither side trusts an index or a count from the other: a bad frame fails its
// task (or drops the link) with a clear error, never undefined behaviour.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cstdint>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "pipe/connection.hpp"
#include "pool/dispatcher.hpp"
#include "runtime/private_fds.hpp"
#include "test_util.hpp"
#include "zmp/exceptions.hpp"
#include "zmp/pool.hpp"
#include "zmp/transport/codec.hpp"
#include "zmp/transport/fd_channel.hpp"

using namespace std::chrono_literals;
using namespace std::string_literals;
using zmp::detail::ErrorRecord;
using zmp::detail::FunctionId;
using zmp::transport::ChannelMessage;
using zmp::transport::FdChannel;

namespace {

int square(int x) { return x * x; }

FunctionId id_of_square() {
    auto pointer = &square;
    return zmp::detail::identify(reinterpret_cast<const void*>(pointer),
                                 zmp::detail::trampoline_for<decltype(pointer)>());
}

// A pool worker process, with the test in the dispatcher's place.
struct WorkerUnderTest {
    FdChannel link;  // the dispatcher's end
    zmp::Process process;
    zmp::detail::StatusPage status;
};

WorkerUnderTest start_worker() {
    // The dispatcher's end is private to this process, as the pool's is: the worker (a forked
    // child) does not inherit it, so closing it here is the worker's end of stream.
    auto [mine, theirs] = zmp::detail::private_channel_pair();
    zmp::Connection their_end = zmp::detail::connection_from_channel(std::move(theirs));
    zmp::Process process(zmp::detail::pool_worker_main, their_end, zmp::detail::WorkerInit{});
    process.start();
    their_end.close();
    auto [page, page_fd] = zmp::detail::StatusPage::create();
    const char setup[] = {static_cast<char>(0x91), 0x02};  // msgpack [2], with the status page
    mine.send(setup, sizeof setup, std::span<const int>(&page_fd, 1));
    ::close(page_fd);
    return {std::move(mine), std::move(process), std::move(page)};
}

struct Definition {
    std::uint32_t slot;
    FunctionId function;
};
struct TaskFrame {
    std::uint64_t id;
    std::uint32_t slot;
    std::vector<std::tuple<int>> args;
};

std::string request(const std::vector<Definition>& definitions, const std::vector<TaskFrame>& tasks) {
    msgpack::sbuffer buffer;
    msgpack::packer<msgpack::sbuffer> out(buffer);
    out.pack_array(3);
    out.pack(0);
    out.pack_array(static_cast<std::uint32_t>(definitions.size()));
    for (const auto& d : definitions) {
        out.pack_array(2);
        out.pack(d.slot);
        out.pack(d.function);
    }
    out.pack_array(static_cast<std::uint32_t>(tasks.size()));
    for (const auto& t : tasks) {
        out.pack_array(3);
        out.pack(t.id);
        out.pack(t.slot);
        out.pack(t.args);
    }
    return std::string(buffer.data(), buffer.size());
}

struct Outcome {
    bool ok = false;
    std::vector<int> values;
    ErrorRecord error;
};

// Sends a request and reads the worker's reply: each task's outcome by id, in order.
std::vector<std::pair<std::uint64_t, Outcome>> round_trip(WorkerUnderTest& worker, const std::string& bytes) {
    worker.link.send(bytes.data(), bytes.size());
    REQUIRE(worker.link.poll(60'000));
    ChannelMessage reply;
    REQUIRE(worker.link.recv(reply));
    auto decoded = zmp::transport::decode(reply.data.get(), reply.size);
    const msgpack::object& message = decoded.get();
    REQUIRE(message.type == msgpack::type::ARRAY);
    REQUIRE(message.via.array.size == 3);
    std::vector<std::pair<std::uint64_t, Outcome>> outcomes;
    const msgpack::object& results = message.via.array.ptr[1];
    for (std::uint32_t i = 0; i < results.via.array.size; ++i) {
        const msgpack::object& entry = results.via.array.ptr[i];
        Outcome outcome;
        outcome.ok = entry.via.array.ptr[1].as<bool>();
        if (outcome.ok)
            outcome.values = entry.via.array.ptr[2].as<std::vector<int>>();
        else
            outcome.error = entry.via.array.ptr[2].as<ErrorRecord>();
        outcomes.emplace_back(entry.via.array.ptr[0].as<std::uint64_t>(), outcome);
    }
    return outcomes;
}

void finish(WorkerUnderTest& worker, int expected_exitcode) {
    zmp::detail::forget_private_fd(worker.link.fd());
    worker.link.close();  // end of stream: the worker retires
    REQUIRE(worker.process.join(60s));
    CHECK(worker.process.exitcode() == expected_exitcode);
}

}  // namespace

TEST_CASE("a worker refuses a function slot beyond its limit: the request's tasks fail, the worker goes on") {
    WorkerUnderTest worker = start_worker();
    const std::uint32_t slot = GENERATE(0xFFFFFFFFu, zmp::detail::kMaxFunctionSlots);
    auto outcomes = round_trip(worker, request({{slot, id_of_square()}}, {{7, slot, {{3}}}}));
    REQUIRE(outcomes.size() == 1);
    CHECK(outcomes[0].first == 7);
    CHECK_FALSE(outcomes[0].second.ok);
    CHECK(outcomes[0].second.error.type == "zmp::ProtocolError");
    CHECK(outcomes[0].second.error.message.find(std::to_string(slot)) != std::string::npos);
    CHECK(outcomes[0].second.error.message.find("limit") != std::string::npos);
    // The worker is sound: a good request after the bad one runs.
    outcomes = round_trip(worker, request({{0, id_of_square()}}, {{8, 0, {{3}, {4}}}}));
    REQUIRE(outcomes.size() == 1);
    CHECK(outcomes[0].second.ok);
    CHECK(outcomes[0].second.values == std::vector<int>{9, 16});
    finish(worker, 0);
}

TEST_CASE("a task naming an undefined slot, or a function the worker cannot find, fails alone") {
    WorkerUnderTest worker = start_worker();
    FunctionId nowhere = id_of_square();
    nowhere.function.module = "/no/such/module.so";
    auto outcomes = round_trip(worker, request({{0, id_of_square()}, {1, nowhere}},
                                             {{1, 0, {{2}}}, {2, 5, {{2}}}, {3, 1, {{2}}}, {4, 0, {{5}}}}));
    REQUIRE(outcomes.size() == 4);
    CHECK(outcomes[0].second.values == std::vector<int>{4});
    CHECK(outcomes[1].second.error.type == "zmp::ProtocolError");  // slot 5 was never defined
    CHECK(outcomes[2].second.error.type == "zmp::ValueError");     // the module is not loaded here
    CHECK(outcomes[2].second.error.message.find("/no/such/module.so") != std::string::npos);
    CHECK(outcomes[3].second.values == std::vector<int>{25});
    finish(worker, 0);
}

TEST_CASE("a request a worker cannot read ends it with a ProtocolError, not a crash") {
    WorkerUnderTest worker = start_worker();
    // Not msgpack; a request of an unknown kind; a task with id 0.
    const std::string garbage = GENERATE("\xc1"s, "\x93\x07\x90\x90"s, "\x93\x00\x90\x91\x93\x00\x00\x90"s);
    worker.link.send(garbage.data(), garbage.size());
    REQUIRE(worker.process.join(60s));
    CHECK(worker.process.exitcode() == 1);
}

namespace {

// Tasks that speak for their own worker, as a broken or hostile worker would. A fresh Pool(1)
// numbers its first task 1.
void send_frame(const std::string& bytes) {
    zmp::transport::FdChannel* link = zmp::detail::pool_worker_link();
    if (link == nullptr) throw std::logic_error("not running in a pool worker");
    link->send(bytes.data(), bytes.size());
}

// Reports one value for the two-item task 1.
int short_results(int x) {
    if (x == 1) {
        msgpack::sbuffer buffer;
        msgpack::packer<msgpack::sbuffer> out(buffer);
        out.pack_array(3);
        out.pack(0);
        out.pack_array(1);
        out.pack_array(3);
        out.pack(std::uint64_t{1});
        out.pack(true);
        out.pack(std::vector<int>{42});
        out.pack(std::uint64_t{0});
        send_frame(std::string(buffer.data(), buffer.size()));
    }
    return x;
}

// Writes `kind` of garbage on the link, then waits to be dropped.
int garbage_then_wait(int kind) {
    zmp::transport::FdChannel* link = zmp::detail::pool_worker_link();
    if (link == nullptr) throw std::logic_error("not running in a pool worker");
    if (kind == 0) {
        const char corrupt[16] = "not a header...";  // fails the framing's magic
        (void)::write(link->fd(), corrupt, sizeof corrupt);
    } else if (kind == 1) {
        const std::uint64_t header[2] = {std::uint64_t{1} << 40, 0x7a6d704600000000ULL};  // 1 TiB announced
        (void)::write(link->fd(), header, sizeof header);
    } else if (kind == 2) {
        send_frame("\x92\x07\x90"s);  // [7, []]: no such kind
    } else {
        send_frame("\x93\x00\x91\x05\x00"s);  // a result that is not [id, ok, values]
    }
    std::this_thread::sleep_for(60s);
    return 0;
}

}  // namespace

TEST_CASE("a worker reporting fewer values than its task has items fails that task, and the pool goes on") {
    zmp::Pool pool(1);
    try {
        auto values = pool.map(short_results, std::vector<int>{1, 2}, 2);
        FAIL("no error; got " << values.size() << " values");
    } catch (const zmp::ProtocolError& e) {
        const std::string what = e.what();
        CHECK(what.find("ForkPoolWorker-1") != std::string::npos);
        CHECK(what.find("1 values for a task of 2 items") != std::string::npos);
    }
    CHECK(pool.map(square, std::vector<int>{1, 2, 3}) == std::vector<int>{1, 4, 9});
}

TEST_CASE("a worker sending garbage is dropped: its task fails with ProtocolError, a new worker takes over") {
    const int kind = GENERATE(0, 1, 2, 3);
    zmp::Pool pool(1);
    auto doomed = pool.apply_async(garbage_then_wait, kind);
    try {
        doomed.get(60s);
        FAIL("no error");
    } catch (const zmp::ProtocolError& e) {
        CHECK(std::string(e.what()).find("pool worker ForkPoolWorker-1") != std::string::npos);
    }
    CHECK(pool.apply(square, 7) == 49);  // on its replacement
}
