// zmp::Pool: Python's Pool and ProcessPoolExecutor semantics (Python's own cases that apply),
// and the ways it must do better: dead workers cost only their own task, retries, no hangs.
#include <catch2/catch.hpp>

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <numeric>
#include <set>
#include <thread>

#include "pool_tasks.hpp"
#include "test_util.hpp"
#include "zmp/pool.hpp"

using namespace std::chrono_literals;
using zmp::Connection;
using zmp::StartMethod;

namespace {

using pool_tasks::fail_on;
using pool_tasks::sleep_then;
using pool_tasks::square;
long twice(long x) { return 2 * x; }
int add(int a, int b) { return a + b; }
int my_pid(int) { return static_cast<int>(::getpid()); }
void nothing(int) {}

struct CustomError : std::runtime_error {
    using std::runtime_error::runtime_error;
};
ZMP_REGISTER_EXCEPTION(CustomError);
struct UnknownError : std::exception {
    const char* what() const noexcept override { return "nobody knows this type"; }
};
int throw_custom(int) { throw CustomError("custom!"); }
int throw_unknown(int) { throw UnknownError(); }
int throw_value_error(int) { throw zmp::ValueError("bad value"); }

std::string echo(std::string s) { return s; }

// Sends this worker's pid, then sleeps, so the test can kill it mid-task.
int report_then_sleep(Connection out, double seconds) {
    out.send(static_cast<int>(::getpid()));
    std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
    return 1;
}

int segfault(int) {
    ::raise(SIGSEGV);
    return 0;
}

int exit_task(int code) { zmp::exit(code); }

int configured = 0;
void init_worker(int value, Connection out) {
    configured = value;
    out.send(static_cast<int>(::getpid()));
}
int read_configured(int) { return configured; }
void failing_initializer() { throw std::runtime_error("initializer broke"); }

// Item 0 fails at once; the others take a while and say so on `out` when they are done.
int fail_or_slow(Connection out, int x) {
    if (x == 0) throw std::runtime_error("item 0 failed");
    std::this_thread::sleep_for(0.3s);
    out.send(x);
    return x;
}

// The what() of an error a callback was given.
std::string what_of(std::exception_ptr error) {
    try {
        std::rethrow_exception(error);
    } catch (const std::exception& e) {
        return e.what();
    } catch (...) {
        return "not a std::exception";
    }
}

StartMethod any_method() { return GENERATE(StartMethod::fork, StartMethod::spawn, StartMethod::forkserver); }

}  // namespace

TEST_CASE("apply, map, starmap and their async forms give the serial results in order") {
    zmp::Pool pool({.processes = 2, .context = any_method()});
    CHECK(pool.apply(square, 7) == 49);
    std::vector<int> input(100);
    std::iota(input.begin(), input.end(), 0);
    std::vector<int> expected;
    for (int x : input) expected.push_back(x * x);
    CHECK(pool.map(square, input) == expected);
    CHECK(pool.map(square, input, 20) == expected);
    CHECK(pool.map_async(square, input).get() == expected);
    std::vector<std::tuple<int, int>> pairs;
    for (int i = 0; i < 50; ++i) pairs.emplace_back(i, 2 * i);
    auto sums = pool.starmap(add, pairs);
    REQUIRE(sums.size() == 50);
    for (int i = 0; i < 50; ++i) CHECK(sums[i] == 3 * i);
    CHECK(pool.starmap_async(add, pairs, {.chunksize = 7}).get() == sums);
    CHECK(pool.apply_async([](int a, int b) { return a * b; }, 6, 7).get() == 42);  // capture-free lambda
}

TEST_CASE("async results: ready, wait, successful, get with and without a timeout") {
    zmp::Pool pool(2);
    auto slow = pool.apply_async(sleep_then, 0.5, 5);
    CHECK_FALSE(slow.ready());
    CHECK_THROWS_AS(slow.successful(), zmp::ValueError);
    auto start = test_util::Clock::now();
    CHECK_THROWS_AS(slow.get(0.1s), zmp::TimeoutError);
    CHECK(test_util::seconds_since(start) >= 0.09);
    CHECK_FALSE(slow.wait(0.01s));
    CHECK(slow.get() == 5);
    CHECK(slow.ready());
    CHECK(slow.successful());
    auto failing = pool.apply_async(fail_on, 3, 3);
    failing.wait();
    CHECK_FALSE(failing.successful());
    CHECK_THROWS_AS(failing.get(), std::runtime_error);
}

TEST_CASE("callback and error_callback: exactly one runs, on the callback thread") {
    zmp::Pool pool(2);
    std::mutex m;
    std::vector<int> got;
    std::string error_text;
    std::thread::id callback_thread;
    auto ok = pool.map_async(zmp::callbacks(
                                 [&](const std::vector<int>& v) {
                                     std::lock_guard lock(m);
                                     got = v;
                                     callback_thread = std::this_thread::get_id();
                                 },
                                 [&](std::exception_ptr) { FAIL("error callback for a success"); }),
                             square, std::vector<int>{1});
    auto bad = pool.apply_async(zmp::callbacks([&](int) { FAIL("value callback for a failure"); },
                                               [&](std::exception_ptr e) {
                                                   std::lock_guard lock(m);
                                                   error_text = what_of(e);
                                               }),
                                fail_on, 4, 4);
    ok.wait();
    bad.wait();
    pool.close();
    pool.join();  // callbacks have run once the pool is joined
    std::lock_guard lock(m);
    CHECK(got == std::vector<int>{1});
    CHECK(error_text == "task 4 failed");
    CHECK(callback_thread != std::this_thread::get_id());
}

TEST_CASE("empty inputs give empty results at once") {
    zmp::Pool pool(2);
    CHECK(pool.map(square, std::vector<int>{}).empty());
    CHECK(pool.map_async(square, std::vector<int>{}).get(1s).empty());
    int count = 0;
    for (int v : pool.imap(square, std::vector<int>{})) count += v + 1;
    for (int v : pool.imap_unordered(square, std::vector<int>{})) count += v + 1;
    CHECK(count == 0);
}

TEST_CASE("an input that raises: map raises it, imap yields the earlier results first") {
    zmp::Pool pool(2);
    auto broken = test_util::generated(10, [](long i) {
        if (i == 3) throw std::invalid_argument("input broke at 3");
        return static_cast<int>(i);
    });
    CHECK_THROWS_AS(pool.map(square, broken, 1), std::invalid_argument);
    auto it = pool.imap(square, broken);
    CHECK(it.next() == 0);
    CHECK(it.next() == 1);
    CHECK(it.next() == 4);
    CHECK_THROWS_AS(it.next(), std::invalid_argument);
    CHECK_FALSE(it.next().has_value());
}

TEST_CASE("imap keeps order, with chunks too, and imap_unordered yields a permutation") {
    zmp::Pool pool({.processes = 2, .context = any_method()});
    std::vector<int> input(1000);
    std::iota(input.begin(), input.end(), 0);
    std::vector<int> ordered;
    for (int v : pool.imap(square, input, 100)) ordered.push_back(v);
    REQUIRE(ordered.size() == 1000);
    for (int i = 0; i < 1000; ++i) CHECK(ordered[i] == i * i);
    std::multiset<int> unordered;
    for (int v : pool.imap_unordered(square, input, 7)) unordered.insert(v);
    CHECK(unordered == std::multiset<int>(ordered.begin(), ordered.end()));
    auto one = pool.imap(sleep_then, std::vector<std::tuple<double, int>>{});
    CHECK_FALSE(one.next(1s).has_value());
}

TEST_CASE("imap over an endless input reads it as it goes, and stops when dropped") {
    zmp::Pool pool(2);
    long total = 0;
    {
        auto results = pool.imap(twice, test_util::generated_endless([](long i) { return i; }));
        for (long i = 0; i < 1000; ++i) total += *results.next(30s);
    }
    CHECK(total == 999L * 1000L);
    CHECK(pool.apply(square, 3) == 9);  // the pool is free again
}

TEST_CASE("imap next(timeout) raises TimeoutError while a result is late") {
    zmp::Pool pool(1);
    auto it = pool.imap(sleep_then, std::vector<std::tuple<double, int>>{{0.5, 1}});
    CHECK_THROWS_AS(it.next(0.05s), zmp::TimeoutError);
    CHECK(it.next() == 1);
    CHECK_FALSE(it.next().has_value());
}

TEST_CASE("invalid pool arguments are errors, as in Python") {
    CHECK_THROWS_AS(zmp::Pool(0), zmp::ValueError);
    CHECK_THROWS_AS(zmp::Pool(-1), zmp::ValueError);
    CHECK_THROWS_AS(zmp::Pool({.processes = 1, .maxtasksperchild = 0}), zmp::ValueError);
    CHECK_THROWS_AS(zmp::Pool({.processes = 1, .maxtasksperchild = -1}), zmp::ValueError);
    zmp::Pool pool(1);
    CHECK_THROWS_AS(pool.map(square, std::vector<int>{1}, 0), zmp::ValueError);
    CHECK_THROWS_AS(pool.imap(square, std::vector<int>{1}, 0), zmp::ValueError);
    CHECK(zmp::Pool().processes() == zmp::cpu_count());
}

TEST_CASE("terminate with 10,000 queued tasks returns promptly and fails what was pending") {
    zmp::Pool pool(2);
    std::vector<std::tuple<double, int>> long_tasks(10000, {10.0, 1});
    auto result = pool.starmap_async(sleep_then, long_tasks, {.chunksize = 1});
    auto single = pool.apply_async(square, 2);
    std::this_thread::sleep_for(0.1s);
    pool.terminate();
    CHECK_THROWS_AS(result.get(30s), zmp::PoolTerminated);
    CHECK_THROWS_AS(single.get(30s), zmp::PoolTerminated);
    pool.join();
    CHECK_THROWS_AS(pool.apply(square, 1), zmp::ValueError);
}

TEST_CASE("a closed pool refuses work, finishes what it has, and join needs close first") {
    zmp::Pool pool(2);
    auto pending = pool.map_async(sleep_then, std::vector<std::tuple<double, int>>{{0.2, 1}, {0.2, 2}});
    pool.map_async(square, std::vector<int>{1, 2, 3});
    CHECK_THROWS_AS(pool.join(), zmp::ValueError);
    pool.close();
    CHECK_THROWS_AS(pool.apply(square, 1), zmp::ValueError);
    CHECK_THROWS_AS(pool.map_async(square, std::vector<int>{1}), zmp::ValueError);
    pool.join();
    CHECK(pending.get(0s) == std::vector<int>{1, 2});
}

TEST_CASE("the destructor closes and joins: submitted work completes") {
    zmp::AsyncResult<int> result({}, {});
    {
        zmp::Pool pool(2);
        result = pool.apply_async(sleep_then, 0.2, 11);
    }
    CHECK(result.ready());
    CHECK(result.get() == 11);
}

TEST_CASE("task exceptions keep their type and message") {
    zmp::Pool pool({.processes = 2, .context = any_method()});
    try {
        pool.apply(fail_on, 123, 123);
        FAIL("no exception");
    } catch (const std::runtime_error& e) {
        CHECK(std::string(e.what()) == "task 123 failed");
    }
    CHECK_THROWS_AS(pool.apply(throw_custom, 1), CustomError);
    CHECK_THROWS_AS(pool.apply(throw_value_error, 1), zmp::ValueError);
    try {
        pool.apply(throw_unknown, 1);
        FAIL("no exception");
    } catch (const zmp::RemoteError& e) {
        CHECK(e.type_name().find("UnknownError") != std::string::npos);
        CHECK(e.message() == "nobody knows this type");
        CHECK(e.origin().find("PoolWorker") != std::string::npos);
    }
}

TEST_CASE("map raises the first error only after every task has finished") {
    zmp::Pool pool(2);
    auto [reader, writer] = zmp::Pipe(false);
    std::vector<std::tuple<Connection, int>> calls = {{writer, 0}, {writer, 1}};
    CHECK_THROWS_AS(pool.starmap(fail_or_slow, calls, {.chunksize = 1}), std::runtime_error);
    REQUIRE(reader.poll());  // the slow item had finished before the error surfaced
    CHECK(reader.recv<int>() == 1);
}

TEST_CASE("maxtasksperchild: workers retire after N tasks and new pids take over") {
    zmp::Pool pool({.processes = 3, .maxtasksperchild = 10, .context = any_method()});
    std::vector<int> input(100, 0);
    auto pids = pool.map(my_pid, input, 1);
    std::set<int> distinct(pids.begin(), pids.end());
    CHECK(distinct.size() >= 10);  // 100 tasks, 10 per worker
    CHECK(pool.map(square, std::vector<int>{1, 2, 3}) == std::vector<int>{1, 4, 9});
}

TEST_CASE("maxtasksperchild=1 with close and join before the tasks finish does not hang") {
    zmp::Pool pool({.processes = 2, .maxtasksperchild = 1});
    std::vector<std::tuple<double, int>> tasks;
    for (int i = 0; i < 6; ++i) tasks.emplace_back(0.05, i);
    auto result = pool.starmap_async(sleep_then, tasks, {.chunksize = 1});
    pool.close();
    pool.join();
    CHECK(result.get(0s) == std::vector<int>{0, 1, 2, 3, 4, 5});
}

TEST_CASE("a large pool: 100 workers, 1000 tasks") {
    zmp::Pool pool(100);
    std::vector<long> input(1000);
    std::iota(input.begin(), input.end(), 0L);
    auto doubled = pool.map(twice, input);
    CHECK(std::accumulate(doubled.begin(), doubled.end(), 0L) == 999L * 1000L);
}

TEST_CASE("the initializer runs once in each worker before its tasks") {
    const StartMethod method = any_method();
    auto [reader, writer] = zmp::Pipe(false);
    std::set<int> initialized;
    {
        zmp::Pool pool({.processes = 3, .context = method}, init_worker, 42, writer);
        auto values = pool.map(read_configured, std::vector<int>(30, 0), 1);
        CHECK(values == std::vector<int>(30, 42));
    }
    writer.close();
    try {
        for (;;) initialized.insert(reader.recv<int>());
    } catch (const zmp::EOFError&) {
    }
    CHECK(initialized.size() == 3);
}

TEST_CASE("an initializer that throws breaks the pool instead of respawning for ever") {
    zmp::Pool pool({.processes = 2}, failing_initializer);
    try {
        // The pool may already be broken when the task is submitted (then submit raises) or
        // break while it waits (then get raises): either way, BrokenPool naming the error.
        pool.apply_async(square, 2).get(30s);
        FAIL("no error");
    } catch (const zmp::BrokenPool& e) {
        CHECK(std::string(e.what()).find("initializer broke") != std::string::npos);
    }
    CHECK_THROWS_AS(pool.apply(square, 3), zmp::BrokenPool);
}

TEST_CASE("a worker SIGKILLed mid-task: that task fails with WorkerLost, the rest complete, the pool goes on") {
    const StartMethod method = any_method();
    zmp::Pool pool({.processes = 2, .context = method});
    auto [reader, writer] = zmp::Pipe(false);
    auto doomed = pool.apply_async(report_then_sleep, writer, 30.0);
    const int victim = reader.recv<int>();
    auto others = pool.map_async(sleep_then, std::vector<std::tuple<double, int>>(8, {0.05, 3}), {.chunksize = 1});
    const auto killed_at = test_util::Clock::now();
    REQUIRE(::kill(victim, SIGKILL) == 0);
    try {
        doomed.get(30s);
        FAIL("no WorkerLost");
    } catch (const zmp::WorkerLost& e) {
        CHECK(e.pid() == victim);
        CHECK(e.signal() == SIGKILL);
        CHECK(e.exitcode() == -SIGKILL);
        CHECK(test_util::seconds_since(killed_at) < 10);  // generous: the spec is well under 1 s
    }
    CHECK(others.get(60s) == std::vector<int>(8, 3));
    CHECK(pool.apply(square, 9) == 81);
    auto pids = pool.map(my_pid, std::vector<int>(20, 0), 1);
    CHECK(std::find(pids.begin(), pids.end(), victim) == pids.end());  // it was replaced
}

TEST_CASE("with max_retries=1 a task whose worker was killed runs again and the map completes") {
    zmp::Pool pool({.processes = 2, .max_retries = 1});
    auto [reader, writer] = zmp::Pipe(false);
    auto survivor = pool.apply_async(report_then_sleep, writer, 0.3);
    ::kill(reader.recv<int>(), SIGKILL);
    CHECK(survivor.get(60s) == 1);  // the second attempt reported and finished
    CHECK(reader.poll(30s));
}

TEST_CASE("a task that segfaults every time fails with WorkerLost and does not take the pool down") {
    zmp::Pool pool({.processes = 2, .max_retries = 2});
    try {
        pool.apply(segfault, 1);
        FAIL("no WorkerLost");
    } catch (const zmp::WorkerLost& e) {
        CHECK(e.signal() == SIGSEGV);
    }
    auto many = pool.map(square, std::vector<int>{1, 2, 3, 4});
    CHECK(many == std::vector<int>{1, 4, 9, 16});
}

TEST_CASE("zmp::exit inside a task ends its worker: WorkerLost with that exit code") {
    zmp::Pool pool(1);
    try {
        pool.apply(exit_task, 7);
        FAIL("no WorkerLost");
    } catch (const zmp::WorkerLost& e) {
        CHECK(e.exitcode() == 7);
        CHECK(e.signal() == 0);
    }
    CHECK(pool.apply(square, 5) == 25);
}

TEST_CASE("1 MiB arguments and results") {
    zmp::Pool pool({.processes = 2, .context = any_method()});
    std::string big(1 << 20, 'q');
    big[12345] = 'z';
    CHECK(pool.apply(echo, big) == big);
    auto all = pool.map(echo, std::vector<std::string>(4, big));
    for (const auto& s : all) CHECK(s == big);
}

TEST_CASE("futures: submit, done, add_done_callback, as_completed and its timeout") {
    zmp::Pool pool(2);
    auto slow = pool.submit(sleep_then, 0.4, 1);
    auto fast = pool.submit(sleep_then, 0.0, 2);
    std::atomic<int> called{0};
    fast.add_done_callback([&](const zmp::Future<int>& f) { called += f.get(); });
    std::vector<zmp::Future<int>> order;
    for (const auto& f : zmp::as_completed(std::vector<zmp::Future<int>>{slow, fast, fast})) order.push_back(f);
    REQUIRE(order.size() == 2);  // a future listed twice comes once
    CHECK(order[0].get() == 2);
    CHECK(order[1].get() == 1);
    CHECK(slow.done());
    auto never = pool.submit(sleep_then, 5.0, 3);
    auto completing = zmp::as_completed(std::vector<zmp::Future<int>>{never, fast}, 0.2s);
    auto first = completing.next();  // fast is done already: it comes at once
    REQUIRE(first.has_value());
    CHECK(first->get() == 2);
    try {
        (void)completing.next();
        FAIL("no timeout");
    } catch (const zmp::TimeoutError& e) {
        CHECK(std::string(e.what()) == "1 (of 2) futures unfinished");
    }
    pool.terminate();
    CHECK(called == 2);
    CHECK_THROWS_AS(pool.submit(nothing, 1), zmp::ValueError);  // a terminated pool takes nothing
}

TEST_CASE("progress: the callback sees the count grow to the total") {
    zmp::Pool pool(2);
    std::mutex m;
    std::vector<std::pair<std::size_t, std::size_t>> seen;
    auto result = pool.map(square, std::vector<int>(1000, 2),
                           {.chunksize = 10, .progress = [&](std::size_t done, std::size_t total) {
                                std::lock_guard lock(m);
                                seen.emplace_back(done, total);
                            }});
    pool.close();
    pool.join();
    CHECK(result == std::vector<int>(1000, 4));
    REQUIRE_FALSE(seen.empty());
    CHECK(seen.back() == std::pair<std::size_t, std::size_t>{1000, 1000});
    for (std::size_t i = 1; i < seen.size(); ++i) CHECK(seen[i].first >= seen[i - 1].first);
}

TEST_CASE("a pool works inside a child, and a forked child cannot use its parent's pool") {
    zmp::Pool pool(1);
    auto [reader, writer] = zmp::Pipe(false);
    zmp::Process child([&pool, w = writer]() mutable {
        bool refused = false;
        try {
            pool.apply(square, 2);
        } catch (const zmp::ValueError&) {
            refused = true;
        }
        zmp::Pool own(2);
        w.send(std::make_tuple(refused, own.apply(square, 6)));
    });
    child.start();
    writer.close();
    auto [refused, value] = reader.recv<std::tuple<bool, int>>();
    child.join();
    CHECK(refused);
    CHECK(value == 36);
    CHECK(child.exitcode() == 0);
    CHECK(pool.apply(square, 4) == 16);
}

TEST_CASE("starmap_async with callback and error_callback") {
    zmp::Pool pool(2);
    std::mutex m;
    std::vector<int> sums;
    std::string error_text;
    std::vector<std::tuple<int, int>> pairs = {{1, 2}, {3, 4}};
    pool.starmap_async(zmp::callbacks(
                           [&](const std::vector<int>& v) {
                               std::lock_guard lock(m);
                               sums = v;
                           },
                           [&](std::exception_ptr) { FAIL("error callback for a success"); }),
                       add, pairs);
    pool.starmap_async(zmp::callbacks([&](const std::vector<int>&) { FAIL("value callback for a failure"); },
                                      [&](std::exception_ptr e) {
                                          std::lock_guard lock(m);
                                          error_text = what_of(e);
                                      }),
                       fail_on, std::vector<std::tuple<int, int>>{{1, 2}, {2, 2}});
    pool.close();
    pool.join();
    std::lock_guard lock(m);
    CHECK(sums == std::vector<int>{3, 7});
    CHECK(error_text == "task 2 failed");
}

TEST_CASE("terminate_on_exit: the destructor terminates, as Python's with-block does") {
    zmp::AsyncResult<int> pending({}, {});
    {
        zmp::Pool pool({.processes = 1, .terminate_on_exit = true});
        pending = pool.apply_async(sleep_then, 30.0, 1);
    }
    CHECK(pending.done());
    CHECK_THROWS_AS(pending.get(), zmp::PoolTerminated);  // closing and joining would have given 1
}
