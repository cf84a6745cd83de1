// Queue, SimpleQueue and JoinableQueue across real processes: Python's own cases for them,
// handles travelling (every start method, messages, Pool tasks), no item lost or doubled
// when consumers die or stall, large items, values of the wrong type, garbage at the broker.
#include <catch2/catch.hpp>

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <map>
#include <numeric>
#include <ostream>
#include <random>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "run_leftovers.hpp"
#include "runtime/run.hpp"
#include "runtime/zmq_context.hpp"
#include "spawned.hpp"
#include "test_util.hpp"
#include "zmp/context.hpp"
#include "zmp/pipe.hpp"
#include "zmp/pool.hpp"
#include "zmp/process.hpp"
#include "zmp/queue.hpp"
#include "zmp/sharedctypes.hpp"
#include "zmp/sync.hpp"
#include "zmp/transport/zsocket.hpp"

using namespace std::chrono_literals;
using test_util::in_child;
using test_util::seconds_since;
using test_util::start;
using Clock = std::chrono::steady_clock;

namespace {

void sleep_s(double s) { std::this_thread::sleep_for(std::chrono::duration<double>(s)); }

// Receives one value, failing the test instead of hanging if none comes.
template <class T>
T recv_within(zmp::Connection& c, zmp::Seconds limit = 60s) {
    REQUIRE(c.poll(limit));
    return c.recv<T>();
}

// How a multiset of items got compares with the items put (each once): how many were never got,
// how many were got more than once, how many were got that were never put. All 0 when exact.
struct Census {
    std::size_t missing = 0, doubled = 0, unknown = 0;
    bool operator==(const Census&) const = default;
};
std::ostream& operator<<(std::ostream& out, const Census& c) {
    return out << "{missing " << c.missing << ", doubled " << c.doubled << ", unknown " << c.unknown << "}";
}
template <class T>
Census census(std::vector<T> got, std::vector<T> put) {
    std::sort(got.begin(), got.end());
    std::sort(put.begin(), put.end());
    Census c;
    std::size_t i = 0, j = 0;
    while (i < got.size() || j < put.size()) {
        if (j == put.size() || (i < got.size() && got[i] < put[j])) {
            (j > 0 && got[i] == put[j - 1] ? c.doubled : c.unknown) += 1;
            ++i;
        } else if (i == got.size() || put[j] < got[i]) {
            ++c.missing;
            ++j;
        } else {
            ++i;
            ++j;
        }
    }
    return c;
}

std::vector<int> range(int from, int to) {
    std::vector<int> v(static_cast<std::size_t>(to - from));
    std::iota(v.begin(), v.end(), from);
    return v;
}

}  // namespace

// ---- cases 23-27: put, get, timeouts, order, sizes --------------------------------------------

TEST_CASE(
    "Queue(6): every put variant fills it, then Full at once or after the timeout, and a child drains it (case 23)") {
    zmp::Queue<int> q(6);
    CHECK(q.empty());
    CHECK_FALSE(q.full());
    q.put(1);
    q.put(2, true);
    q.put(3, true, zmp::forever);
    q.put(4, false);
    q.put(5, false, 1s);
    q.put_nowait(6);
    CHECK(q.full());
    CHECK(q.qsize() == 6);
    CHECK_FALSE(q.empty());

    CHECK_THROWS_AS(q.put(7, false), zmp::Full);
    CHECK_THROWS_AS(q.put(7, false, 1s), zmp::Full);  // block=false ignores the timeout
    CHECK_THROWS_AS(q.put_nowait(7), zmp::Full);
    auto t0 = Clock::now();
    CHECK_THROWS_AS(q.put(7, true, 0.2s), zmp::Full);
    CHECK(seconds_since(t0) >= 0.15);  // the timeout really waits
    CHECK_THROWS_AS(q.put(7, 0.05s), zmp::Full);
    CHECK(q.qsize() == 6);  // no failed put took a slot

    // A child drains the queue, in order.
    CHECK(in_child([q] {
              for (int i = 1; i <= 6; ++i)
                  if (q.get(30s) != i) return i;
              return q.empty() ? 0 : 10;
          }) == 0);
    CHECK(q.empty());
    CHECK_FALSE(q.full());
    CHECK(q.qsize() == 0);
}

TEST_CASE("a put blocked on a full queue goes through when a consumer in another process makes room") {
    zmp::Queue<int> q(1);
    q.put(1);
    zmp::Process consumer = start([q] {
        sleep_s(0.2);
        if (q.get(30s) != 1) zmp::exit(1);
        if (q.get(30s) != 2) zmp::exit(2);
    });
    q.put(2, 30s);  // waits for the consumer's first get
    consumer.join();
    CHECK(consumer.exitcode() == 0);
    CHECK(q.empty());
}

TEST_CASE("get: a child's puts 2..5 come back in order through every get variant, then Empty (case 24)") {
    zmp::Queue<int> q;
    zmp::Process producer = start([q] {
        for (int i = 2; i <= 5; ++i) q.put(i);
    });
    CHECK(q.get(true, zmp::forever) == 2);
    CHECK(q.get(true) == 3);
    CHECK(q.get(1s) == 4);
    producer.join();  // every item it put is in the broker once it has exited
    CHECK(producer.exitcode() == 0);
    CHECK(q.get_nowait() == 5);
    CHECK_THROWS_AS(q.get(false), zmp::Empty);
    CHECK_THROWS_AS(q.get_nowait(), zmp::Empty);
    CHECK_THROWS_AS(q.get(false, 1s), zmp::Empty);  // block=false ignores the timeout
    CHECK_THROWS_AS(q.get(true, 0.05s), zmp::Empty);
}

TEST_CASE("get(0.2 s) on an empty queue really waits before raising Empty (case 25)") {
    zmp::Queue<int> q;
    const auto t0 = Clock::now();
    CHECK_THROWS_AS(q.get(true, 0.2s), zmp::Empty);
    CHECK(seconds_since(t0) >= 0.15);
    const auto t1 = Clock::now();
    CHECK_THROWS_AS(q.get(0.2s), zmp::Empty);
    CHECK(seconds_since(t1) >= 0.15);
}

TEST_CASE("a negative timeout means zero: Empty and Full at once, an item that is there is returned") {
    zmp::Queue<int> q(1);
    const auto t0 = Clock::now();
    CHECK_THROWS_AS(q.get(-1s), zmp::Empty);
    CHECK_THROWS_AS(q.get(true, -5s), zmp::Empty);
    q.put(1);
    CHECK_THROWS_AS(q.put(2, -1s), zmp::Full);
    CHECK_THROWS_AS(q.put(2, true, -5s), zmp::Full);
    CHECK(seconds_since(t0) < 5.0);  // not waited on as a long (or endless) timeout
    CHECK(q.get(-1s) == 1);
    q.put(3, -1s);  // there is room: goes through
    CHECK(q.get(true, -1s) == 3);
}

TEST_CASE("parent puts 0..9, then a child puts 10..19: the parent gets 0..19 in order, then Empty (case 26)") {
    zmp::Queue<int> q;
    for (int i = 0; i < 10; ++i) q.put(i);
    CHECK(q.qsize() == 10);  // in the putting process, qsize waits for its own items
    zmp::Process child = start([q] {
        for (int i = 10; i < 20; ++i) q.put(i);
    });
    std::vector<int> got;
    for (int i = 0; i < 20; ++i) got.push_back(q.get(30s));
    CHECK(got == range(0, 20));
    child.join();
    CHECK(child.exitcode() == 0);
    CHECK_THROWS_AS(q.get_nowait(), zmp::Empty);
}

TEST_CASE("qsize goes 0, 1, 2, 1, 0 and empty, full and maxsize agree, seen from any process (case 27)") {
    zmp::Queue<int> q;
    CHECK(q.qsize() == 0);
    q.put(1);
    CHECK(q.qsize() == 1);
    q.put(2);
    CHECK(q.qsize() == 2);
    CHECK(in_child([q] { return q.qsize() == 2 ? 0 : 1; }) == 0);
    CHECK(q.get(30s) == 1);
    CHECK(q.qsize() == 1);
    CHECK(q.get(30s) == 2);
    CHECK(q.qsize() == 0);
    CHECK(q.empty());
    CHECK_FALSE(q.full());  // unbounded: never full

    zmp::Queue<int> bounded(3);
    CHECK(bounded.maxsize() == 3);
    bounded.put(1);
    bounded.put(2);
    CHECK_FALSE(bounded.full());
    CHECK(in_child([bounded] {
              bounded.put(3);  // on a queue with maxsize, put returns once the broker holds it
              return bounded.full() ? 0 : 1;
          }) == 0);
    CHECK(bounded.full());
    CHECK(bounded.qsize() == 3);
    CHECK(bounded.get(30s) == 1);
    CHECK_FALSE(bounded.full());
    CHECK(in_child([bounded] { return bounded.qsize() == 2 && !bounded.full() ? 0 : 1; }) == 0);

    for (std::int64_t unbounded : {0, -1}) {
        zmp::Queue<int> u(unbounded);
        for (int i = 0; i < 100; ++i) u.put(i);
        CHECK_FALSE(u.full());
        CHECK(u.qsize() == 100);
    }
}

TEST_CASE("a value that cannot be packed raises in put, sends nothing and takes no slot (case 29)") {
    zmp::Queue<zmp::Barrier> q(1);
    zmp::Barrier with_action(2, [] {});  // a Barrier with an action cannot travel
    zmp::Barrier plain(2);
    CHECK_THROWS_AS(q.put(with_action), zmp::ValueError);
    CHECK(q.empty());
    q.put(plain);  // the failed put held no slot
    CHECK(q.qsize() == 1);
    CHECK(q.full());
    CHECK(q.get(30s) == plain);
    CHECK(q.empty());
}

// ---- case 31: close ----------------------------------------------------------------------------

TEST_CASE(
    "close(): put and get raise ValueError in this process, closing twice is fine, other processes go on (case 31)") {
    zmp::Queue<int> q;
    zmp::Queue<int> results;
    zmp::Process consumer = start([q, results] {
        results.put(q.get(60s));  // a handle in another process: unaffected by the parent's close
        results.put(q.get(60s));
    });
    q.put(1);
    q.put(2);
    q.close();  // waits until the items are in the broker
    q.close();
    CHECK_THROWS_AS(q.put(3), zmp::ValueError);
    CHECK_THROWS_WITH(q.put(3), Catch::Contains("closed"));
    CHECK_THROWS_AS(q.get(), zmp::ValueError);
    CHECK_THROWS_AS(q.get_nowait(), zmp::ValueError);
    CHECK_THROWS_AS(q.put_nowait(3), zmp::ValueError);
    zmp::Queue<int> copy = q;  // copies in this process are closed too
    CHECK_THROWS_AS(copy.put(3), zmp::ValueError);
    CHECK(results.get(60s) == 1);
    CHECK(results.get(60s) == 2);
    consumer.join();
    CHECK(consumer.exitcode() == 0);
}

// ---- case 32: SimpleQueue ----------------------------------------------------------------------

TEST_CASE(
    "SimpleQueue: empty goes true -> false after a child puts, order is kept, close twice, then ValueError (case 32)") {
    zmp::SimpleQueue<std::string> q;
    CHECK(q.empty());
    zmp::Process producer = start([q] {
        q.put("one");
        q.put("two");
        q.put("three");
    });
    producer.join();
    CHECK(producer.exitcode() == 0);
    CHECK_FALSE(q.empty());
    CHECK(q.get() == "one");
    CHECK(q.get() == "two");
    CHECK(q.get() == "three");
    CHECK(q.empty());

    // A get blocks until another process puts.
    zmp::Process late = start([q] {
        sleep_s(0.1);
        q.put("late");
    });
    CHECK(q.get() == "late");
    late.join();

    q.close();
    q.close();
    CHECK_THROWS_AS(q.put("x"), zmp::ValueError);
    CHECK_THROWS_AS(q.get(), zmp::ValueError);
}

// ---- case 28: JoinableQueue ----------------------------------------------------------------------

TEST_CASE("JoinableQueue: join() returns only once 4 consumer processes have marked all 10 items done (case 28)") {
    zmp::JoinableQueue<int> q;
    zmp::Value<long> done(0);
    std::vector<zmp::Process> consumers;
    for (int c = 0; c < 4; ++c) {
        consumers.push_back(start([q, done] {
            for (;;) {
                const int item = q.get(60s);
                if (item < 0) {
                    q.task_done();
                    return;
                }
                sleep_s(0.02);
                done.fetch_add(1);
                q.task_done();
            }
        }));
    }
    for (int i = 0; i < 10; ++i) q.put(i);
    CHECK(q.join(60s));
    CHECK(done.value() == 10);
    for (int c = 0; c < 4; ++c) q.put(-1);
    CHECK(q.join(60s));
    for (auto& p : consumers) {
        p.join();
        CHECK(p.exitcode() == 0);
    }
    CHECK(q.empty());
}

TEST_CASE("JoinableQueue: task_done too many times raises ValueError, join(timeout) is false until all is done") {
    zmp::JoinableQueue<int> q;
    CHECK(q.join(0s));  // nothing was put: done
    CHECK_THROWS_AS(q.task_done(), zmp::ValueError);
    q.put(1);
    CHECK_FALSE(q.join(0.1s));
    CHECK(q.get(30s) == 1);
    CHECK_FALSE(q.join(0.1s));  // taken is not done
    q.task_done();
    CHECK(q.join(30s));
    CHECK(q.join());
    CHECK_THROWS_AS(q.task_done(), zmp::ValueError);

    // Another process may take and mark items done, and a join in a third one sees it.
    q.put(2);
    q.put(3);
    CHECK_FALSE(q.join(0s));
    CHECK(in_child([q] {
              if (q.get(30s) != 2 || q.get(30s) != 3) return 1;
              q.task_done();
              q.task_done();
              return 0;
          }) == 0);
    CHECK(in_child([q] { return q.join(30s) ? 0 : 1; }) == 0);
    CHECK(q.join(0s));
    CHECK_THROWS_AS(q.task_done(), zmp::ValueError);
}

TEST_CASE("JoinableQueue is a Queue: maxsize, Full and Empty work the same") {
    zmp::JoinableQueue<int> q(2);
    CHECK(q.maxsize() == 2);
    q.put(1);
    q.put(2);
    CHECK(q.full());
    CHECK_THROWS_AS(q.put_nowait(3), zmp::Full);
    zmp::Queue<int>& as_queue = q;
    CHECK(as_queue.get(30s) == 1);
    CHECK(q.get_nowait() == 2);
    CHECK_THROWS_AS(q.get_nowait(), zmp::Empty);
    q.task_done();
    q.task_done();
    CHECK(q.join(0s));
}

// ---- handles travel ------------------------------------------------------------------------------

namespace {
// A spawn or forkserver child gets its queues only as arguments: it shares no memory with us.
void use_travelled_queues(zmp::Queue<int> in, zmp::Queue<std::string> out, zmp::JoinableQueue<int> jobs,
                          zmp::SimpleQueue<std::string> simple) {
    const int x = in.get(60s);
    out.put("got " + std::to_string(x));
    const int job = jobs.get(60s);
    out.put("job " + std::to_string(job));
    jobs.task_done();
    simple.put("simple");
}

void put_one(zmp::Queue<int> q, int value) { q.put(value); }

// Python's test_nested_startmethod: a child forwards its queue to a grandchild.
void forward_to_grandchild(zmp::Queue<int> q, std::string method) {
    q.put(1);
    zmp::Process grandchild = zmp::get_context(method).Process(put_one, q, 2);
    grandchild.start();
    grandchild.join();
    if (grandchild.exitcode() != 0) zmp::exit(3);
}
}  // namespace

TEST_CASE("queues work as Process arguments under every start method") {
    const auto method = GENERATE(zmp::StartMethod::fork, zmp::StartMethod::spawn, zmp::StartMethod::forkserver);
    zmp::Queue<int> in;
    zmp::Queue<std::string> out;
    zmp::JoinableQueue<int> jobs;
    zmp::SimpleQueue<std::string> simple;
    zmp::Process p = zmp::get_context(method).Process(use_travelled_queues, in, out, jobs, simple);
    p.start();
    in.put(21);
    jobs.put(7);
    CHECK(out.get(60s) == "got 21");
    CHECK(out.get(60s) == "job 7");
    CHECK(jobs.join(60s));
    CHECK(simple.get() == "simple");
    p.join();
    CHECK(p.exitcode() == 0);
}

TEST_CASE("a child forwards its queue to a grandchild: both items arrive, under every start method (case 20)") {
    const auto method = GENERATE(zmp::StartMethod::fork, zmp::StartMethod::spawn, zmp::StartMethod::forkserver);
    zmp::Queue<int> q;
    const std::string method_name(zmp::to_string(method));
    zmp::Process child = zmp::get_context(method).Process(forward_to_grandchild, q, method_name);
    child.start();
    std::vector<int> got{q.get(60s), q.get(60s)};
    std::sort(got.begin(), got.end());
    CHECK(got == std::vector<int>{1, 2});
    child.join();
    CHECK(child.exitcode() == 0);
}

TEST_CASE("queues sent through a Pipe to a sibling that never inherited them keep working") {
    auto [to_child, from_parent] = zmp::Pipe();
    // The child starts before any of the queues exists: it can only get them in a message.
    zmp::Process sibling([c = from_parent]() mutable {
        auto [q, jobs, simple] =
            c.recv<std::tuple<zmp::Queue<int>, zmp::JoinableQueue<int>, zmp::SimpleQueue<std::string>>>();
        int result = 0;
        result |= q.get(60s) == 5 ? 0 : 1;
        q.put(6);
        result |= jobs.get(60s) == 7 ? 0 : 2;
        jobs.task_done();
        simple.put("from the sibling");
        c.send(std::string("done"));
        zmp::exit(result);
    });
    sibling.start();
    zmp::Queue<int> q;
    zmp::JoinableQueue<int> jobs;
    zmp::SimpleQueue<std::string> simple;
    q.put(5);
    jobs.put(7);
    to_child.send(std::make_tuple(q, jobs, simple));
    CHECK(recv_within<std::string>(to_child) == "done");
    CHECK(q.get(60s) == 6);
    CHECK(jobs.join(60s));
    CHECK(simple.get() == "from the sibling");
    sibling.join();
    CHECK(sibling.exitcode() == 0);
}

TEST_CASE("a queue handle decodes to the same queue, a handle of another kind is a ProtocolError") {
    auto [a, b] = zmp::Pipe();
    zmp::Queue<int> q;
    zmp::JoinableQueue<int> jq;
    zmp::SimpleQueue<int> sq;
    a.send(q);
    CHECK(b.recv<zmp::Queue<int>>() == q);
    a.send(sq);
    CHECK(b.recv<zmp::SimpleQueue<int>>() == sq);
    a.send(jq);
    CHECK(b.recv<zmp::JoinableQueue<int>>() == jq);
    a.send(jq);
    const zmp::Queue<int> plain = b.recv<zmp::Queue<int>>();  // a JoinableQueue is a Queue
    jq.put(1);
    CHECK(plain.get(30s) == 1);
    jq.task_done();
    CHECK(jq.join(0s));

    a.send(q);
    CHECK_THROWS_AS(b.recv<zmp::JoinableQueue<int>>(), zmp::ProtocolError);
    a.send(q);
    CHECK_THROWS_AS(b.recv<zmp::SimpleQueue<int>>(), zmp::ProtocolError);
    a.send(sq);
    CHECK_THROWS_AS(b.recv<zmp::Queue<int>>(), zmp::ProtocolError);
    a.send(zmp::Lock());
    CHECK_THROWS_AS(b.recv<zmp::Queue<int>>(), zmp::ProtocolError);
    a.send(std::string("not a handle"));
    CHECK_THROWS_AS(b.recv<zmp::Queue<int>>(), zmp::ProtocolError);
    CHECK(q != zmp::Queue<int>());
}

TEST_CASE("an item that does not convert to T raises ProtocolError in get, and the queue goes on") {
    zmp::Queue<std::string> strings;
    auto [a, b] = zmp::Pipe();
    a.send(strings);
    const auto ints = b.recv<zmp::Queue<int>>();  // the same queue, read as Queue<int>
    strings.put("not a number");
    CHECK_THROWS_AS(ints.get(30s), zmp::ProtocolError);
    strings.put("next");
    CHECK(strings.get(30s) == "next");
    ints.put(42);
    CHECK_THROWS_AS(strings.get(30s), zmp::ProtocolError);
    CHECK(strings.empty());
}

namespace {
int put_square(zmp::Queue<int> q, int x) {
    q.put(x * x);
    return x;
}
int take_one(zmp::Queue<int> q) { return q.get(60s); }
}  // namespace

TEST_CASE("a Queue works as a Pool task argument under every start method") {
    const auto method = GENERATE(zmp::StartMethod::fork, zmp::StartMethod::spawn, zmp::StartMethod::forkserver);
    zmp::Queue<int> q;
    zmp::Pool pool(zmp::PoolOptions{.processes = 2, .context = method});
    std::vector<zmp::AsyncResult<int>> results;
    for (int i = 0; i < 50; ++i) results.push_back(pool.apply_async(put_square, q, i));
    for (auto& r : results) (void)r.get(60s);
    std::vector<int> squares;
    for (int i = 0; i < 50; ++i) squares.push_back(q.get(60s));
    std::sort(squares.begin(), squares.end());
    std::vector<int> expected;
    for (int i = 0; i < 50; ++i) expected.push_back(i * i);
    CHECK(squares == expected);

    // And the other way: tasks take items the parent puts.
    for (int i = 1; i <= 20; ++i) q.put(i);
    std::vector<zmp::AsyncResult<int>> takes;
    for (int i = 0; i < 20; ++i) takes.push_back(pool.apply_async(take_one, q));
    std::vector<int> taken;
    for (auto& r : takes) taken.push_back(r.get(60s));
    std::sort(taken.begin(), taken.end());
    CHECK(taken == range(1, 21));
}

// ---- nothing lost, nothing doubled ---------------------------------------------------------------

TEST_CASE(
    "a consumer SIGKILLed while blocked in get takes nothing with it: every later item reaches another consumer") {
    zmp::Queue<int> q;
    zmp::Semaphore ready(0);
    zmp::Process victim = start([q, ready] {
        ready.release();
        (void)q.get();
        zmp::exit(7);  // it must never get an item: the queue is empty until it is dead
    });
    REQUIRE(ready.acquire(30s));
    sleep_s(0.2);  // let it block in get()
    victim.kill();
    victim.join();
    CHECK(victim.exitcode() == -SIGKILL);

    for (int i = 0; i < 100; ++i) q.put(i);
    auto [reader, writer] = zmp::Pipe(false);
    zmp::Process other = start([q, w = writer]() mutable {
        std::vector<int> got;
        for (int i = 0; i < 100; ++i) got.push_back(q.get(30s));
        w.send(got);
    });
    const auto got = recv_within<std::vector<int>>(reader);
    CHECK(census(got, range(0, 100)) == Census{});
    CHECK(std::is_sorted(got.begin(), got.end()));  // one producer, one consumer: in order
    other.join();
    CHECK(other.exitcode() == 0);
    CHECK(q.qsize() == 0);
}

TEST_CASE("a consumer that received ahead and is SIGKILLed: the rest get every other item exactly once") {
    constexpr int kItems = 2000;
    zmp::Queue<int> q;
    for (int i = 0; i < kItems; ++i) q.put(i);
    REQUIRE(q.qsize() == kItems);
    auto [reader, writer] = zmp::Pipe(false);
    zmp::Process victim = start([q, w = writer]() mutable {
        std::vector<int> got;
        for (int k = 0; k < 10; ++k) got.push_back(q.get(30s));  // fast: it receives ahead
        w.send(got);
        sleep_s(600);
    });
    const auto victim_got = recv_within<std::vector<int>>(reader);
    CHECK(victim_got == range(0, 10));
    victim.kill();
    victim.join();
    CHECK(victim.exitcode() == -SIGKILL);

    // The survivors: another process and this one take turns until all the rest is taken.
    zmp::Process survivor = start([q, w = writer]() mutable {
        std::vector<int> got;
        for (int k = 0; k < (kItems - 10) / 2; ++k) got.push_back(q.get(30s));
        w.send(got);
    });
    std::vector<int> all = victim_got;
    for (int k = 0; k < (kItems - 10) / 2; ++k) all.push_back(q.get(30s));
    const auto survivor_got = recv_within<std::vector<int>>(reader);
    all.insert(all.end(), survivor_got.begin(), survivor_got.end());
    survivor.join();
    CHECK(survivor.exitcode() == 0);
    CHECK(census(all, range(0, kItems)) == Census{});  // every item once: none lost, none doubled
    CHECK_THROWS_AS(q.get(0.3s), zmp::Empty);
}

TEST_CASE("a consumer that takes a few items and stops calling get strands nothing: another consumer gets the rest") {
    constexpr int kItems = 1000;
    zmp::Queue<int> q;
    for (int i = 0; i < kItems; ++i) q.put(i);
    REQUIRE(q.qsize() == kItems);
    auto [reader, writer] = zmp::Pipe(false);
    zmp::Process idle = start([q, w = writer]() mutable {
        std::vector<int> got;
        for (int k = 0; k < 3; ++k) got.push_back(q.get(30s));
        w.send(got);
        sleep_s(600);  // alive, but never calls get() again
    });
    std::vector<int> all = recv_within<std::vector<int>>(reader);
    CHECK(all == range(0, 3));
    for (int k = 3; k < kItems; ++k) all.push_back(q.get(30s));
    CHECK(census(all, range(0, kItems)) == Census{});
    CHECK_THROWS_AS(q.get(0.3s), zmp::Empty);
    CHECK(idle.is_alive());
    idle.kill();
    idle.join();
}

TEST_CASE("8 producers x 8 consumers x 10,000 items: each delivered exactly once, each producer's order kept") {
    constexpr int kProducers = 8, kConsumers = 8, kPerProducer = 10000;
    constexpr std::int64_t kStride = 1000000;  // item = producer * kStride + sequence
    zmp::Queue<std::int64_t> q;
    std::vector<zmp::Connection> readers;
    std::vector<zmp::Process> consumers, producers;
    for (int c = 0; c < kConsumers; ++c) {
        auto [reader, writer] = zmp::Pipe(false);
        readers.push_back(reader);
        consumers.push_back(start([q, w = writer]() mutable {
            std::vector<std::int64_t> got;
            for (;;) {
                const std::int64_t item = q.get(60s);
                if (item < 0) break;
                got.push_back(item);
            }
            w.send(got);
        }));
        writer.close();
    }
    for (int p = 0; p < kProducers; ++p) {
        producers.push_back(start([q, p] {
            for (int i = 0; i < kPerProducer; ++i) q.put(p * kStride + i);
        }));
    }
    for (auto& p : producers) {
        p.join();
        CHECK(p.exitcode() == 0);
    }
    // The producers have exited, so their items are in the broker: the sentinels come after them.
    for (int c = 0; c < kConsumers; ++c) q.put(-1);

    std::vector<std::int64_t> all;
    int out_of_order = 0;  // items a consumer got after a later item of the same producer
    std::string first_out_of_order;
    for (std::size_t c = 0; c < readers.size(); ++c) {
        const auto got = recv_within<std::vector<std::int64_t>>(readers[c], 90s);
        std::map<std::int64_t, std::int64_t> last;  // producer -> last sequence seen by this consumer
        for (std::int64_t item : got) {
            const auto [it, fresh] = last.try_emplace(item / kStride, item % kStride);
            if (fresh) continue;
            if (item % kStride <= it->second && out_of_order++ == 0) {
                first_out_of_order = "consumer " + std::to_string(c) + " got item " + std::to_string(item % kStride) +
                                     " of producer " + std::to_string(item / kStride) + " after its item " +
                                     std::to_string(it->second);
            }
            it->second = item % kStride;
        }
        all.insert(all.end(), got.begin(), got.end());
    }
    for (auto& c : consumers) {
        c.join();
        CHECK(c.exitcode() == 0);
    }
    {
        INFO(first_out_of_order);
        CHECK(out_of_order == 0);
    }
    // Items still in the queue once every consumer has taken its sentinel came out after it.
    std::vector<std::int64_t> late;
    try {
        for (;;) late.push_back(q.get_nowait());
    } catch (const zmp::Empty&) {
    }
    CHECK(late.size() == 0);
    all.insert(all.end(), late.begin(), late.end());
    std::vector<std::int64_t> expected;
    for (int p = 0; p < kProducers; ++p)
        for (int i = 0; i < kPerProducer; ++i) expected.push_back(p * kStride + i);
    CHECK(census(all, expected) == Census{});
}

namespace {
void put_range_and_return(zmp::Queue<int> q, int n) {
    for (int i = 0; i < n; ++i) q.put(i);
}  // returns at once: the process exits right after the last put
}  // namespace

TEST_CASE(
    "a producer that puts 100,000 items and exits at once delivers them all, in order, under every start method") {
    const auto method = GENERATE(zmp::StartMethod::fork, zmp::StartMethod::spawn, zmp::StartMethod::forkserver);
    constexpr int kItems = 100000;
    zmp::Queue<int> q;
    zmp::Process producer = zmp::get_context(method).Process(put_range_and_return, q, kItems);
    producer.start();
    // Unlike Python, joining the producer before draining the queue does not deadlock.
    REQUIRE(producer.join(60s));
    CHECK(producer.exitcode() == 0);
    int out_of_order = 0;
    for (int i = 0; i < kItems; ++i)
        if (q.get(30s) != i) ++out_of_order;
    CHECK(out_of_order == 0);
    CHECK_THROWS_AS(q.get_nowait(), zmp::Empty);
}

// ---- large items ---------------------------------------------------------------------------------

namespace {
std::string pattern(std::size_t size, unsigned seed) {
    std::string s(size, '\0');
    std::minstd_rand rng(seed);
    for (std::size_t i = 0; i < size; i += 64) s[i] = static_cast<char>(rng());
    if (size > 0) s.back() = 'z';
    return s;
}
}  // namespace

TEST_CASE("a 4 MiB item goes through a queue both ways between processes") {
    zmp::Queue<std::string> q;
    zmp::Queue<std::string> back;
    zmp::Process echo = start([q, back] { back.put(q.get(60s)); });
    const std::string big = pattern(4u << 20, 4);
    q.put(big);
    CHECK(back.get(60s) == big);
    echo.join();
    CHECK(echo.exitcode() == 0);
}

TEST_CASE("a 64 MiB item goes through with the default options") {
    // max_item_bytes counts the *serialized* item: a string's msgpack header (5 bytes) counts, so
    // the largest std::string that fits is max_item_bytes - 5, and the default leaves room for a
    // string of a full 64 MiB.
    const std::size_t biggest = zmp::QueueOptions{}.max_item_bytes - 5;
    REQUIRE(biggest >= (std::size_t{64} << 20));
    zmp::Queue<std::string> q;
    zmp::Queue<std::uint64_t> sizes;
    zmp::Process child = start([q, sizes] {
        const std::string s = q.get(60s);
        sizes.put(s == pattern(s.size(), 64) ? s.size() : 0);
    });
    q.put(pattern(biggest, 64));
    CHECK(sizes.get(60s) == biggest);
    child.join();
    CHECK(child.exitcode() == 0);
    CHECK_THROWS_AS(q.put(std::string(biggest + 1, 'x')), zmp::ValueError);  // one byte over
    q.put("small");
    CHECK(q.get(30s) == "small");
}

TEST_CASE("max_item_bytes: a larger put raises ValueError and the queue still works, a bad limit is refused") {
    zmp::Queue<std::string> q(0, zmp::QueueOptions{.max_item_bytes = 1 << 20});
    CHECK_THROWS_AS(q.put(std::string(2u << 20, 'x')), zmp::ValueError);
    CHECK(q.empty());
    const std::size_t fits = (1u << 20) - 5;  // str32 header + payload == 1 MiB exactly
    q.put(std::string(fits, 'y'));
    CHECK_THROWS_AS(q.put(std::string(fits + 1, 'y')), zmp::ValueError);
    q.put("after");
    CHECK(in_child([q] { return q.get(30s).size() == fits && q.get(30s) == "after" ? 0 : 1; }) == 0);
    CHECK(q.empty());

    // The limit travels with the handle.
    CHECK(in_child([q] {
              try {
                  q.put(std::string(2u << 20, 'x'));
              } catch (const zmp::ValueError&) {
                  return 0;
              }
              return 1;
          }) == 0);

    CHECK_THROWS_AS(zmp::Queue<int>(0, zmp::QueueOptions{.max_item_bytes = zmp::kMaxQueueItemBytes + 1}),
                    zmp::ValueError);
}

// ---- bad input at the broker -----------------------------------------------------------------------

TEST_CASE("garbage sent straight to the broker about a queue leaves the queue and its clients working") {
    zmp::Queue<std::string> q;  // starts the broker
    zmp::Queue<std::string> results;
    const std::uint64_t id = q.core().to_wire().id;
    const std::string endpoint = zmp::detail::this_run().broker_endpoint();
    REQUIRE_FALSE(endpoint.empty());

    // A consumer is blocked in get() the whole time.
    zmp::Semaphore ready(0);
    zmp::Process consumer = start([q, results, ready] {
        ready.release();
        results.put(q.get(60s));
        results.put(q.get(60s));
    });
    REQUIRE(ready.acquire(30s));

    zmq::socket_t raw = zmp::transport::open_socket(zmp::detail::zmq_context(), zmq::socket_type::dealer);
    raw.connect(endpoint);
    auto send = [&](const msgpack::sbuffer& b) { raw.send(zmq::buffer(b.data(), b.size()), zmq::send_flags::none); };
    std::mt19937 rng(7);
    for (int i = 0; i < 300; ++i) {  // random bytes
        std::string junk(rng() % 96, '\0');
        for (auto& ch : junk) ch = static_cast<char>(rng());
        raw.send(zmq::buffer(junk), zmq::send_flags::none);
    }
    // Envelopes of every op about the queue, each malformed: wrong types, wrong lengths, no HELLO.
    for (int op = 0; op < 64; ++op) {
        for (int variant = 0; variant < 5; ++variant) {
            msgpack::sbuffer out;
            msgpack::packer<msgpack::sbuffer> pk(out);
            switch (variant) {
                case 0:  // arguments of the wrong types
                    pk.pack_array(4);
                    pk.pack(op);
                    pk.pack(id);
                    pk.pack(1000 + op);
                    pk.pack_array(3);
                    pk.pack(std::string("x"));
                    pk.pack(std::string("y"));
                    pk.pack_nil();
                    break;
                case 1:  // arguments not an array
                    pk.pack_array(4);
                    pk.pack(op);
                    pk.pack(id);
                    pk.pack(2000 + op);
                    pk.pack(std::string("args"));
                    break;
                case 2:  // an object id that is a string
                    pk.pack_array(4);
                    pk.pack(op);
                    pk.pack(std::string("queue"));
                    pk.pack(3000 + op);
                    pk.pack_array(0);
                    break;
                case 3:  // too short
                    pk.pack_array(2);
                    pk.pack(op);
                    pk.pack(id);
                    break;
                default:  // a map instead of an array
                    pk.pack_map(1);
                    pk.pack(op);
                    pk.pack(id);
                    break;
            }
            send(out);
            if (variant == 0) {  // the same, truncated
                raw.send(zmq::buffer(out.data(), out.size() / 2), zmq::send_flags::none);
            }
        }
    }
    raw.send(zmq::buffer(std::string("\xdd\xff\xff\xff\xff", 5)), zmq::send_flags::none);  // a 4-billion-element array
    raw.send(zmq::buffer(std::string("two")), zmq::send_flags::sndmore);                   // two frames
    raw.send(zmq::buffer(std::string("frames")), zmq::send_flags::none);

    // The queue and its clients carry on.
    q.put("first");
    q.put("second");
    CHECK(results.get(60s) == "first");
    CHECK(results.get(60s) == "second");
    consumer.join();
    CHECK(consumer.exitcode() == 0);
    q.put("third");
    CHECK(q.qsize() == 1);
    CHECK(in_child([q] { return q.get(30s) == "third" ? 0 : 1; }) == 0);
    CHECK(q.empty());
}

// ---- Queue<>: values of any type ---------------------------------------------------------------

TEST_CASE("Queue<> carries values of any type between processes, and each is read as the type it is") {
    zmp::Queue<> q;
    auto [reader, writer] = zmp::Pipe(false);
    zmp::Process child = start([q, w = writer]() mutable {
        const zmp::AnyValue number = q.get(30s);
        const zmp::AnyValue text = q.get(30s);
        const zmp::AnyValue list = q.get(30s);
        const zmp::AnyValue nothing = q.get(30s);
        w.send(std::make_tuple(number.as<int>(), text.as<std::string>(), list.as<std::vector<int>>(), nothing.is_nil(),
                               number.is<std::string>(), text.is<int>()));
        q.put(std::make_tuple(1, std::string("back")));
    });
    q.put(42);
    q.put("text");
    q.put(std::vector<int>{1, 2, 3});
    q.put(zmp::AnyValue());
    const auto [number, text, list, nil, number_is_string, text_is_int] =
        recv_within<std::tuple<int, std::string, std::vector<int>, bool, bool, bool>>(reader);
    CHECK(number == 42);
    CHECK(text == "text");
    CHECK(list == std::vector<int>{1, 2, 3});
    CHECK(nil);
    CHECK_FALSE(number_is_string);
    CHECK_FALSE(text_is_int);
    const zmp::AnyValue back = q.get(30s);
    CHECK(back.as<std::tuple<int, std::string>>() == std::make_tuple(1, std::string("back")));
    CHECK_THROWS_AS(back.as<std::string>(), zmp::ProtocolError);
    child.join();
    CHECK(child.exitcode() == 0);
}

TEST_CASE("an AnyValue travels inside other values and arrives as the value it holds") {
    auto [a, b] = zmp::Pipe();
    a.send(std::make_tuple(zmp::AnyValue(std::string("inner")), 7));
    const auto [inner, seven] = b.recv<std::tuple<zmp::AnyValue, int>>();
    CHECK(inner.as<std::string>() == "inner");
    CHECK(seven == 7);
    a.send(std::string("plain"));
    CHECK(b.recv<zmp::AnyValue>().as<std::string>() == "plain");  // any value reads as an AnyValue
    CHECK_THROWS_AS(zmp::AnyValue::from_bytes(std::string("\xdd\xff\xff\xff\xff", 5)), zmp::ProtocolError);
    CHECK(zmp::AnyValue(5) == zmp::AnyValue(5));
    CHECK_FALSE(zmp::AnyValue(5) == zmp::AnyValue(6));
}

namespace {

// Gets a Queue through a Pipe, and a Connection as its argument: tries to put the Connection on the
// queue (refused), then puts a message received through it, and sends the queue back through the Pipe.
void queue_and_connection(zmp::Connection to_parent, zmp::Connection from_parent) {
    auto q = to_parent.recv<zmp::Queue<zmp::Connection>>();
    auto results = to_parent.recv<zmp::Queue<std::string>>();
    try {
        q.put(from_parent);
        results.put("a Connection went onto a Queue");
    } catch (const zmp::ValueError& e) {
        results.put(std::string("refused: ") + e.what());
    }
    results.put(from_parent.recv<std::string>());
    to_parent.send(results);
}

}  // namespace

TEST_CASE("which handles travel where: a Connection is refused by a Queue, travels by Pipe and argument") {
    zmp::Queue<zmp::Connection> connections;
    zmp::Queue<std::string> results;
    auto [here, there] = zmp::Pipe();
    auto [reader, writer] = zmp::Pipe(false);
    CHECK_THROWS_AS(connections.put(writer), zmp::ValueError);  // here, as in any process
    zmp::Process child(zmp::ProcessOptions{.method = GENERATE(zmp::StartMethod::fork, zmp::StartMethod::spawn)},
                       queue_and_connection, there, reader);
    child.start();
    here.send(connections);  // queues travel through a Pipe (by id)...
    here.send(results);
    writer.send(std::string("through the Connection"));  // ...and a Connection as an argument
    auto back = here.recv<zmp::Queue<std::string>>();    // and back again
    const std::string refusal = back.get(60s);
    CHECK(refusal.rfind("refused: ", 0) == 0);
    CHECK(back.get(60s) == "through the Connection");
    child.join();
    CHECK(child.exitcode() == 0);
    CHECK(connections.empty());  // nothing half-put
}

TEST_CASE("a put from the root's atexit handler, after main's thread-locals are gone, arrives") {
    const auto result = test_util::run_command(std::string(HELPER_put_at_exit));
    CHECK(result.status == 0);
    CHECK(result.out == "got 1 7\n");
}

// Python's cancel_join_thread(). What is lost, if anything, depends on how far the feeder got: the
// assertions are those that hold whatever it got to (the broker stopped, so that the feeder
// certainly cannot deliver: test_broker_remote).
TEST_CASE("cancel_join_thread: the child exits, that queue gets a prefix of its items, another queue all of its own") {
    zmp::Queue<int> cancelled;
    zmp::Queue<int> kept;
    const int code = in_child([cancelled, kept] {
        for (int i = 0; i < 2000; ++i) {
            cancelled.put(i);
            kept.put(i);
        }
        cancelled.cancel_join_thread();
        cancelled.join_thread();  // returns at once: nothing to assert but that it returns
        cancelled.close();
        return 0;
    });
    CHECK(code == 0);
    for (int i = 0; i < 2000; ++i) REQUIRE(kept.get(60s) == i);  // every one, in order
    CHECK(kept.empty());
    std::vector<int> got;
    for (;;) {
        try {
            got.push_back(cancelled.get(2s));
        } catch (const zmp::Empty&) {
            break;
        }
    }
    INFO(got.size() << " of 2000 arrived");
    for (std::size_t i = 0; i < got.size(); ++i) REQUIRE(got[i] == static_cast<int>(i));
    // The queue itself goes on.
    cancelled.put(-1);
    CHECK(cancelled.get(60s) == -1);
}

TEST_CASE(
    "cancel_join_thread on a bounded queue and a JoinableQueue loses nothing: put returned once the broker had it") {
    zmp::Queue<int> bounded(10);
    zmp::JoinableQueue<int> joinable;
    const int code = in_child([bounded, joinable] {
        bounded.cancel_join_thread();
        joinable.cancel_join_thread();
        for (int i = 0; i < 5; ++i) {
            bounded.put(i);
            joinable.put(i);
        }
        return 0;
    });
    CHECK(code == 0);
    for (int i = 0; i < 5; ++i) {
        CHECK(bounded.get(60s) == i);
        CHECK(joinable.get(60s) == i);
        joinable.task_done();
    }
    CHECK(joinable.join(60s));
}

TEST_CASE(
    "cancel_join_thread: a producer exits while its broker does not answer, one that did not cancel waits for it") {
    test_util::Spawned root({HELPER_queue_cancel_join});
    const auto pids_line = root.line_within(120s);
    REQUIRE(pids_line);
    int cancel_pid = 0, keep_pid = 0;
    REQUIRE(std::sscanf(pids_line->c_str(), "pids %d %d", &cancel_pid, &keep_pid) == 2);
    // The broker is a thread of the root: stopping the root stops it (and the root's reaping, so
    // an ended child stays a zombie until the root goes on).
    REQUIRE(::kill(root.pid, SIGSTOP) == 0);
    struct Resume {
        pid_t pid;
        ~Resume() { ::kill(pid, SIGCONT); }
    } resume{root.pid};
    REQUIRE(::kill(cancel_pid, SIGUSR1) == 0);
    REQUIRE(::kill(keep_pid, SIGUSR1) == 0);
    // The child that cancelled ends although the broker never acknowledges its items.
    CHECK(run_leftovers::eventually([&] { return test_util::process_state(cancel_pid) == 'Z'; }, 60s));
    // The other cannot end while the broker is stopped: its exit waits for the acknowledgement.
    const char keep_state = test_util::process_state(keep_pid);
    CHECK(keep_state != 'Z');
    CHECK(keep_state != '\0');
    REQUIRE(::kill(root.pid, SIGCONT) == 0);
    CHECK(root.line_within(120s).value_or("(nothing)") == "exits 0 0");
    CHECK(root.line_within(120s).value_or("(nothing)") == "keep 100 of 100 in order");  // nothing lost
    const std::string cancelled = root.line_within(120s).value_or("(nothing)");
    INFO(cancelled);
    CHECK(cancelled.rfind("cancel ", 0) == 0);
    CHECK(cancelled.find(" prefix") != std::string::npos);  // whatever arrived, once, in order
    CHECK(cancelled.find("not a prefix") == std::string::npos);
    CHECK(root.wait() == 0);
}
