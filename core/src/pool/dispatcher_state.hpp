#pragma once
// The dispatcher's own records (dispatcher.cpp, and joined.cpp for workers that join over tcp):
// one header so that both files see the same tables.

#include <zmq.hpp>

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "pool/dispatcher.hpp"
#include "zmp/process.hpp"
#include "zmp/transport/security.hpp"

namespace zmp::detail {

/// A worker that joined over tcp: its ROUTER routing id and what it said of itself.
struct JoinedPeer {
    std::string routing_id;
    std::string host;
    std::string address;  // its IP address, as the connection shows it
    std::int64_t pid = 0;
    bool same_build = false;  // functions may travel to it by address
    bool gone = false;        // lost or retired: removed from the workers at the next sweep
};

/// The tcp endpoint of a pool: its own ZeroMQ context (so that its ZAP handler and refusal
/// reports are the pool's alone), the ROUTER, and when the next ping is due.
struct JoinPoint {
    zmq::context_t context{1};
    std::shared_ptr<transport::Authenticator> zap;
    zmq::socket_t router;
    std::string endpoint;
    std::chrono::milliseconds heartbeat{1000};
    std::chrono::steady_clock::time_point next_ping{};
    int joined_started = 0;
    ~JoinPoint();
};

struct PoolCore::ActiveJob {
    Job job;
    std::uint32_t slot = 0;
    bool started = false;                // its result agreed to start: it can no longer be cancelled
    std::size_t outstanding_chunks = 0;  // read from the input and not yet finished
    std::size_t outstanding_items = 0;
    std::size_t items_read = 0;
    bool input_done = false;
    bool finished = false;
};

struct PoolCore::Task {
    std::shared_ptr<ActiveJob> job;
    EncodedChunk chunk;
    int attempts = 0;
};

struct PoolCore::Worker {
    std::string name;
    std::optional<Process> process;
    transport::FdChannel link;                  // the dispatcher's end: results come in here
    std::unique_ptr<transport::Outbox> outbox;  // tasks go out here, never blocking the loop
    int sentinel = -1;
    std::deque<std::uint64_t> in_flight;
    std::size_t in_flight_items = 0;  // the items of those chunks
    std::vector<char> defined;        // function slots this worker knows
    std::uint64_t tasks_done = 0;     // for status: results taken from it
    std::uint64_t failures = 0;       // of them, tasks that raised
    std::size_t assigned = 0;
    std::size_t window = 1;                  // chunks it may hold; grows once task times are known
    double item_us = 0;                      // moving average of one item's run time
    bool retiring = false;                   // gets no more tasks; its link closes once it is idle
    bool renew = false;                      // retiring after maxtasksperchild tasks (joined: to come back fresh)
    StatusPage status;                       // which task it is running
    std::exception_ptr dropped;              // why its link was dropped (it broke the protocol)
    std::uint64_t running_when_dropped = 0;  // the task it was running then
    std::unique_ptr<JoinedPeer> joined;      // set for a worker that joined over tcp (no process, no link)
};

}  // namespace zmp::detail
