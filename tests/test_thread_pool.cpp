// zmp::ThreadPool: Python's multiprocessing.pool.ThreadPool — Pool's API on threads, for any
// callable (captures too) and any copyable types, with exceptions kept as they were thrown.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <atomic>
#include <latch>
#include <memory>
#include <mutex>
#include <numeric>
#include <ranges>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "test_util.hpp"
#include "zmp/futures.hpp"
#include "zmp/thread_pool.hpp"

using namespace std::chrono_literals;

namespace {

// Not registered anywhere and not a std exception: only a thread pool can hand it back as is.
struct Unlisted {
    int code;
};

// A result type no msgpack adaptor knows.
struct Point {
    int x = 0;
    int y = 0;
    bool operator==(const Point&) const = default;
};

}  // namespace

TEST_CASE("ThreadPool: apply, map, starmap and their async forms, with capturing lambdas") {
    zmp::ThreadPool pool(3);
    int offset = 100;  // not a constant: the lambdas below must capture it
    CHECK(pool.apply([offset](int x) { return x + offset; }, 1) == 101);
    std::vector<int> input(50);
    std::iota(input.begin(), input.end(), 0);
    auto shifted = pool.map([offset](int x) { return Point{x, x + offset}; }, input, 7);
    REQUIRE(shifted.size() == 50);
    for (int i = 0; i < 50; ++i) CHECK(shifted[i] == Point{i, i + offset});
    CHECK(pool.map_async([&](int x) { return x * offset; }, input).get(60s)[49] == 4900);
    std::vector<std::tuple<int, std::string>> pairs = {{1, "a"}, {2, "bb"}};
    auto joined = pool.starmap([](int n, const std::string& s) { return std::to_string(n) + s; }, pairs);
    CHECK(joined == std::vector<std::string>{"1a", "2bb"});
    CHECK(pool.starmap_async([](int a, int b) { return a * b; }, std::vector<std::tuple<int, int>>{{2, 3}}).get() ==
          std::vector<int>{6});
    int side_effect = 0;
    pool.apply([&side_effect] { side_effect = 5; });  // void tasks too
    CHECK(side_effect == 5);
    CHECK(pool.processes() == 3);
}

TEST_CASE("ThreadPool tasks run on the pool's threads, at the same time") {
    zmp::ThreadPool pool(4);
    // Each task waits for all four to have arrived: only four tasks running at once get past it.
    std::latch all_running(4);
    std::mutex m;
    std::set<std::thread::id> threads;
    auto ids = pool.map(
        [&](int) {
            all_running.arrive_and_wait();
            std::lock_guard lock(m);
            threads.insert(std::this_thread::get_id());
            return 1;
        },
        std::vector<int>(4, 0), 1);
    CHECK(ids == std::vector<int>(4, 1));
    CHECK(threads.size() == 4);
    CHECK(threads.count(std::this_thread::get_id()) == 0);
}

TEST_CASE("ThreadPool: a task's exception reaches the caller as it was thrown") {
    zmp::ThreadPool pool(2);
    try {
        pool.apply([] { throw Unlisted{42}; });
        FAIL("no exception");
    } catch (const Unlisted& e) {
        CHECK(e.code == 42);
    }
    // map raises the first error once every task has finished, as Pool's does.
    std::atomic<int> finished{0};
    CHECK_THROWS_AS(pool.map(
                        [&](int x) {
                            if (x == 0) throw std::invalid_argument("zero");
                            std::this_thread::sleep_for(50ms);
                            ++finished;
                            return x;
                        },
                        std::vector<int>{0, 1, 2}, 1),
                    std::invalid_argument);
    CHECK(finished == 2);
}

TEST_CASE("ThreadPool: imap in order, imap_unordered, an endless input read as it goes") {
    zmp::ThreadPool pool(3);
    std::vector<int> ordered;
    for (int v : pool.imap([](long x) { return static_cast<int>(x * x); },
                           test_util::generated(200, [](long i) { return i; }), 5))
        ordered.push_back(v);
    REQUIRE(ordered.size() == 200);
    for (int i = 0; i < 200; ++i) CHECK(ordered[i] == i * i);
    std::multiset<int> unordered;
    for (int v : pool.imap_unordered([](int x) { return x + 1; }, std::vector<int>{1, 2, 3})) unordered.insert(v);
    CHECK(unordered == std::multiset<int>{2, 3, 4});
    std::atomic<long> read{0};
    long total = 0;
    {
        auto endless = test_util::generated_endless([&](long i) {
            ++read;
            return i;
        });
        auto results = pool.imap([](long x) { return 2 * x; }, endless);
        for (long i = 0; i < 1000; ++i) total += *results.next(60s);
    }
    CHECK(total == 999L * 1000L);
    CHECK(read < 5000);                        // read as threads had room, not all at once
    CHECK(pool.apply([] { return 3; }) == 3);  // the pool is free again
}

TEST_CASE("ThreadPool futures: cancel a queued task (it never runs), as_completed, callbacks") {
    zmp::ThreadPool pool(1);
    std::latch release(1);
    std::latch running(1);
    auto blocker = pool.submit([&] {
        running.count_down();
        release.wait();
        return 1;
    });
    running.wait();
    CHECK(blocker.running());
    CHECK_FALSE(blocker.cancel());
    std::atomic<bool> ran{false};
    auto queued = pool.submit([&] {
        ran = true;
        return 2;
    });
    CHECK(queued.cancel());
    CHECK(queued.cancelled());
    CHECK_THROWS_AS(queued.result(), zmp::CancelledError);
    auto after = pool.submit([] { return 3; });
    std::atomic<int> callback_value{0};
    after.add_done_callback([&](const zmp::Future<int>& f) { callback_value = f.result(); });
    release.count_down();
    std::vector<int> order;
    for (const auto& f : zmp::as_completed(std::vector{blocker, after})) order.push_back(f.result());
    CHECK(order == std::vector<int>{1, 3});
    pool.close();
    pool.join();
    CHECK_FALSE(ran);
    CHECK(callback_value == 3);
}

TEST_CASE("ThreadPool: terminate fails what is pending and waits for what runs, close and join") {
    zmp::ThreadPool pool(1);
    std::latch running(1);
    std::atomic<bool> finished{false};
    auto current = pool.apply_async([&] {
        running.count_down();
        std::this_thread::sleep_for(200ms);
        finished = true;
        return 1;
    });
    auto pending = pool.map_async([](int x) { return x; }, std::vector<int>(100, 1), {.chunksize = 1});
    running.wait();
    CHECK_THROWS_AS(pool.join(), zmp::ValueError);  // still running
    pool.terminate();
    CHECK(finished);  // terminate() waited for the running task
    CHECK_THROWS_AS(pending.get(), zmp::PoolTerminated);
    CHECK_THROWS_AS(pool.apply([] { return 0; }), zmp::ValueError);
}

TEST_CASE("ThreadPool: the initializer runs once in each thread, and one that throws breaks the pool") {
    std::mutex m;
    std::multiset<std::thread::id> initialized;
    {
        zmp::ThreadPool pool(
            3,
            [&](int tag) {
                std::lock_guard lock(m);
                if (tag == 9) initialized.insert(std::this_thread::get_id());
            },
            9);
        CHECK(pool.map([](int x) { return x; }, std::vector<int>(30, 1), 1) == std::vector<int>(30, 1));
    }
    CHECK(initialized.size() == 3);
    CHECK(std::set<std::thread::id>(initialized.begin(), initialized.end()).size() == 3);

    zmp::ThreadPool broken(2, [] { throw std::runtime_error("initializer broke"); });
    try {
        broken.apply_async([] { return 1; }).get(60s);
        FAIL("no error");
    } catch (const zmp::BrokenPool& e) {
        CHECK(std::string(e.what()).find("initializer broke") != std::string::npos);
    }
}

TEST_CASE("ThreadPool: callbacks, progress, invalid arguments, a forked child cannot use it") {
    CHECK_THROWS_AS(zmp::ThreadPool(0), zmp::ValueError);
    zmp::ThreadPool pool(2);
    CHECK_THROWS_AS(pool.map([](int x) { return x; }, std::vector<int>{1}, 0), zmp::ValueError);
    std::mutex m;
    std::vector<int> got;
    std::string error;
    std::vector<std::pair<std::size_t, std::size_t>> progress;
    pool.map_async(zmp::callbacks(
                       [&](const std::vector<int>& v) {
                           std::lock_guard lock(m);
                           got = v;
                       },
                       [&](std::exception_ptr) { FAIL("error callback for a success"); }),
                   [](int x) { return -x; }, std::vector<int>(100, 1),
                   {.chunksize = 10, .progress = [&](std::size_t done, std::size_t total) {
                        std::lock_guard lock(m);
                        progress.emplace_back(done, total);
                    }});
    pool.apply_async(zmp::callbacks([&](int) { FAIL("value callback for a failure"); },
                                    [&](std::exception_ptr e) {
                                        try {
                                            std::rethrow_exception(e);
                                        } catch (const std::runtime_error& ex) {
                                            std::lock_guard lock(m);
                                            error = ex.what();
                                        }
                                    }),
                     []() -> int { throw std::runtime_error("failed"); });
    const int code = test_util::in_child([&pool] {
        try {
            pool.apply([] { return 1; });
            return 1;
        } catch (const zmp::ValueError&) {
            zmp::ThreadPool own(1);  // but it may make its own
            return own.apply([] { return 0; });
        }
    });
    CHECK(code == 0);
    pool.close();
    pool.join();
    std::lock_guard lock(m);
    CHECK(got == std::vector<int>(100, -1));
    CHECK(error == "failed");
    REQUIRE_FALSE(progress.empty());
    CHECK(progress.back() == std::pair<std::size_t, std::size_t>{100, 100});
}
