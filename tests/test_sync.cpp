// Lock, RLock, Semaphore, BoundedSemaphore, Event, Condition and Barrier across real processes:
// Python's own cases for them, owner death, handles in messages, garbage at the broker.
//
// CTest runs this binary twice: as is (objects take the same-host fast path) and with
// ZMP_SYNC=broker (every object's state lives in the broker). Both must behave identically.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <functional>
#include <cstdlib>
#include <mutex>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "runtime/run.hpp"
#include "runtime/zmq_context.hpp"
#include "test_util.hpp"
#include "zmp/context.hpp"
#include "zmp/pipe.hpp"
#include "zmp/pool.hpp"
#include "zmp/process.hpp"
#include "zmp/queue.hpp"
#include "zmp/sharedctypes.hpp"
#include "zmp/sync.hpp"
#include "zmp/transport/zsocket.hpp"
#include "broker/handle.hpp"
#include "broker/protocol.hpp"

using namespace std::chrono_literals;
using test_util::in_child;
using test_util::seconds_since;
using test_util::start;
using Clock = std::chrono::steady_clock;

namespace {

// Test set-up only (never the library): waits until cond() holds, at most `limit`.
template <class F>
bool eventually(F cond, std::chrono::duration<double> limit = 30s) {
    const auto end = Clock::now() + std::chrono::duration_cast<Clock::duration>(limit);
    while (!cond()) {
        if (Clock::now() > end) return false;
        std::this_thread::sleep_for(1ms);
    }
    return true;
}

void sleep_s(double s) { std::this_thread::sleep_for(std::chrono::duration<double>(s)); }

bool fast_path() {
    const char* v = std::getenv("ZMP_SYNC");
    return v == nullptr || std::string(v) != "broker";
}

}  // namespace

TEST_CASE("the path under test is the one CTest asked for") {
    zmp::Lock lock;
    CHECK((lock.handle().ref().slot != nullptr) == fast_path());
    zmp::Condition cond;
    CHECK(cond.handle().ref().slot == nullptr);  // a Condition's waits always go through the broker
}

// ---- case 51: Lock and RLock ------------------------------------------------------------------

TEST_CASE("Lock: acquire, acquire(false), release, double release raises (case 51)") {
    zmp::Lock lock;
    CHECK(lock.acquire());
    CHECK_FALSE(lock.acquire(false));
    CHECK_FALSE(lock.acquire(true, 0.05s));
    // Another process sees it held, and may release it (any process may, as in Python).
    CHECK(in_child([lock] { return lock.acquire(false) ? 1 : 0; }) == 0);
    CHECK(in_child([lock] {
              lock.release();
              return 0;
          }) == 0);
    CHECK(lock.acquire(false));
    lock.release();
    CHECK_THROWS_AS(lock.release(), zmp::ValueError);
    CHECK_THROWS_WITH(lock.release(), "semaphore or lock released too many times");
}

TEST_CASE("Lock is Lockable: lock_guard, unique_lock, try_lock, scoped_lock") {
    zmp::Lock a, b;
    {
        std::lock_guard guard(a);
        CHECK_FALSE(a.try_lock());
    }
    CHECK(a.try_lock());
    a.unlock();
    {
        std::unique_lock guard(a, std::try_to_lock);
        CHECK(guard.owns_lock());
        CHECK(in_child([a] { return a.try_lock() ? 1 : 0; }) == 0);
    }
    {
        std::scoped_lock both(a, b);
        CHECK_FALSE(b.try_lock());
    }
    CHECK(b.try_lock());
    b.unlock();
}

TEST_CASE("RLock: nested acquires and releases, an extra release raises (case 51)") {
    zmp::RLock r;
    CHECK(r.acquire());
    CHECK(r.acquire());
    CHECK(r.acquire(false));
    // Held by (this process, this thread): another process and another thread cannot take it.
    CHECK(in_child([r] { return r.acquire(false) ? 1 : 0; }) == 0);
    bool other_thread_got_it = true;
    std::thread([&] { other_thread_got_it = r.acquire(false); }).join();
    CHECK_FALSE(other_thread_got_it);
    r.release();
    r.release();
    r.release();
    CHECK_THROWS_AS(r.release(), zmp::ValueError);
    CHECK(in_child([r] {
              if (!r.acquire(false)) return 1;
              r.release();
              return 0;
          }) == 0);
}

TEST_CASE("RLock: release by a thread or a process that does not own it raises") {
    zmp::RLock r;
    r.acquire();
    bool thread_raised = false;
    std::thread([&] {
        try {
            r.release();
        } catch (const zmp::ValueError&) {
            thread_raised = true;
        }
    }).join();
    CHECK(thread_raised);
    CHECK(in_child([r] {
              try {
                  r.release();
              } catch (const zmp::ValueError&) {
                  return 0;
              }
              return 1;
          }) == 0);
    r.release();
}

// ---- cases 52, 53: Semaphore -------------------------------------------------------------------

TEST_CASE("Semaphore(2) counts down to 0, then acquire(false) fails, and may be released beyond 2 (case 52)") {
    zmp::Semaphore s(2);
    CHECK(s.get_value() == 2);
    CHECK(s.acquire());
    CHECK(s.get_value() == 1);
    CHECK(in_child([s] { return s.acquire(false) ? 0 : 1; }) == 0);  // another process takes one
    CHECK(s.get_value() == 0);
    CHECK_FALSE(s.acquire(false));
    s.release();
    CHECK(s.get_value() == 1);
    s.release();
    s.release();
    s.release();
    CHECK(s.get_value() == 4);
    CHECK_THROWS_AS(zmp::Semaphore(-1), zmp::ValueError);
}

TEST_CASE("BoundedSemaphore: a release beyond the initial value raises (case 52)") {
    zmp::BoundedSemaphore s(2);
    CHECK(s.acquire());
    CHECK(s.acquire());
    CHECK(s.get_value() == 0);
    CHECK(in_child([s] {
              s.release();
              return 0;
          }) == 0);
    s.release();
    CHECK(s.get_value() == 2);
    CHECK_THROWS_AS(s.release(), zmp::ValueError);
    CHECK_THROWS_WITH(s.release(), "semaphore or lock released too many times");
    CHECK(s.get_value() == 2);
}

TEST_CASE("Semaphore(0): non-blocking acquires fail at once, timed ones after the timeout (case 53)") {
    zmp::Semaphore s(0);
    auto t0 = Clock::now();
    CHECK_FALSE(s.acquire(false));
    CHECK_FALSE(s.acquire(false, zmp::forever));
    CHECK_FALSE(s.acquire(false, 1s));  // block=false ignores the timeout
    CHECK(seconds_since(t0) < 0.9);
    t0 = Clock::now();
    CHECK_FALSE(s.acquire(true, 0.2s));
    double waited = seconds_since(t0);
    CHECK(waited >= 0.19);
    CHECK(waited < 10);
    t0 = Clock::now();
    CHECK_FALSE(s.acquire(0.2s));
    waited = seconds_since(t0);
    CHECK(waited >= 0.19);
    CHECK(waited < 10);
    t0 = Clock::now();
    CHECK_FALSE(s.acquire(-1s));  // negative means zero
    CHECK(seconds_since(t0) < 0.9);
}

TEST_CASE("Semaphore: a release in another process wakes a blocked acquire") {
    zmp::Semaphore s(0);
    zmp::Process p = start([s] {
        sleep_s(0.1);
        s.release();
    });
    CHECK(s.acquire(30s));
    p.join();
    CHECK(p.exitcode() == 0);
}

TEST_CASE("Semaphore(2) over 4 processes: never more than 2 holders at once") {
    zmp::Semaphore slots(2);
    zmp::Semaphore inside(0);  // counts holders
    zmp::Lock guard;
    auto ends = zmp::Pipe(false);  // named, not bound: clang 14 cannot capture a structured binding
    auto& reader = ends.first;
    auto& writer = ends.second;
    std::vector<zmp::Process> ps;
    for (int i = 0; i < 4; ++i) {
        ps.push_back(start([=]() mutable {
            for (int round = 0; round < 5; ++round) {
                std::lock_guard hold(slots);
                int now;
                {
                    std::lock_guard g(guard);
                    inside.release();
                    now = inside.get_value();
                }
                writer.send(now);
                sleep_s(0.002);
                inside.acquire();
            }
        }));
    }
    writer.close();
    int most = 0;
    for (int i = 0; i < 20; ++i) most = std::max(most, reader.recv<int>());
    for (auto& p : ps) p.join();
    CHECK(most >= 1);
    CHECK(most <= 2);
    CHECK(slots.get_value() == 2);
}

// ---- cases 54-59: Condition -------------------------------------------------------------------

namespace {

// Under the condition's lock: notify(n), or notify_all() for n < 0.
void notify_locked(const zmp::Condition& cond, int n = 1) {
    std::lock_guard g(cond);
    if (n < 0)
        cond.notify_all();
    else
        cond.notify(n);
}

// A waiter on `cond`: counts itself in `sleeping` under the lock (so that once the lock is taken
// afterwards it is inside wait()), then waits up to `timeout`; counts itself in `woken` if
// notified, in `timed_out` otherwise.
std::function<void()> waiter(zmp::Condition cond, zmp::Semaphore sleeping, zmp::Semaphore woken,
                             zmp::Semaphore timed_out = zmp::Semaphore(0), zmp::Timeout timeout = zmp::forever) {
    return [=] {
        std::lock_guard g(cond);
        sleeping.release();
        if (cond.wait(timeout))
            woken.release();
        else
            timed_out.release();
    };
}

// The same function run by `processes` processes and `threads` threads of this one.
struct Crowd {
    std::vector<zmp::Process> processes;
    std::vector<std::thread> threads;
    Crowd(int n_processes, int n_threads, const std::function<void()>& f) {
        for (int i = 0; i < n_processes; ++i) processes.push_back(start(f));
        for (int i = 0; i < n_threads; ++i) threads.emplace_back(f);
    }
    void join() {
        for (auto& t : threads) t.join();
        for (auto& p : processes) {
            p.join();
            CHECK(p.exitcode() == 0);
        }
    }
};

}  // namespace

TEST_CASE("Condition: each notify() wakes exactly one waiter, a process or a thread (case 54)") {
    zmp::Condition cond;
    zmp::Semaphore sleeping(0), woken(0);
    Crowd crowd(1, 1, waiter(cond, sleeping, woken));
    REQUIRE(sleeping.acquire(30s));
    REQUIRE(sleeping.acquire(30s));
    CHECK(woken.get_value() == 0);
    notify_locked(cond);
    CHECK(woken.acquire(30s));
    sleep_s(0.2);
    CHECK(woken.get_value() == 0);  // the other one still sleeps
    notify_locked(cond);
    CHECK(woken.acquire(30s));
    crowd.join();
}

TEST_CASE("Condition: waiters that time out stay consistent, then notify_all wakes six (case 55)") {
    zmp::Condition cond;
    zmp::Semaphore sleeping(0), timed_out(0), woken(0);
    Crowd timing_out(3, 3, waiter(cond, sleeping, woken, timed_out, 0.2s));
    for (int i = 0; i < 6; ++i) REQUIRE(sleeping.acquire(30s));
    for (int i = 0; i < 6; ++i) CHECK(timed_out.acquire(30s));
    timing_out.join();
    CHECK(woken.get_value() == 0);

    Crowd waiting(3, 3, waiter(cond, sleeping, woken));
    for (int i = 0; i < 6; ++i) REQUIRE(sleeping.acquire(30s));
    notify_locked(cond, -1);
    for (int i = 0; i < 6; ++i) CHECK(woken.acquire(30s));
    waiting.join();
    CHECK(timed_out.get_value() == 0);
}

TEST_CASE("Condition: notify(2) wakes two, notify(4) the rest, notify(3) with none waiting does nothing (case 56)") {
    zmp::Condition cond;
    zmp::Semaphore sleeping(0), woken(0);
    Crowd crowd(3, 3, waiter(cond, sleeping, woken));
    for (int i = 0; i < 6; ++i) REQUIRE(sleeping.acquire(30s));
    notify_locked(cond, 2);
    CHECK(woken.acquire(30s));
    CHECK(woken.acquire(30s));
    sleep_s(0.2);
    CHECK(woken.get_value() == 0);
    notify_locked(cond, 4);
    for (int i = 0; i < 4; ++i) CHECK(woken.acquire(30s));
    notify_locked(cond, 3);
    crowd.join();
    CHECK(woken.get_value() == 0);
}

TEST_CASE("Condition: wait(t) times out after t, wait(0) at once, a notify from a child wakes wait(60) (case 57)") {
    zmp::Condition cond;
    std::unique_lock g(cond);
    auto t0 = Clock::now();
    CHECK_FALSE(cond.wait(0.2s));
    double waited = seconds_since(t0);
    CHECK(waited >= 0.19);
    CHECK(waited < 10);
    CHECK_FALSE(cond.wait(0s));
    CHECK_FALSE(cond.wait(-1s));
    // wait() holds the lock again on return, whatever the outcome.
    CHECK(in_child([cond] { return cond.acquire(false) ? 1 : 0; }) == 0);
    zmp::Process p = start([cond] {
        std::lock_guard lock(cond);  // acquired once the parent's wait() releases it
        cond.notify();
    });
    CHECK(cond.wait(60s));
    g.unlock();
    p.join();
    CHECK(p.exitcode() == 0);
}

TEST_CASE("Condition: wait_for a predicate made true by another process (case 58)") {
    zmp::Condition cond;
    zmp::Semaphore value(0);  // its value is the shared state
    zmp::Process p = start([cond, value] {
        std::unique_lock g(cond);
        zmp::exit(cond.wait_for([&] { return value.get_value() == 4; }) ? 0 : 1);
    });
    for (int i = 0; i < 4; ++i) {
        sleep_s(0.02);
        std::lock_guard g(cond);
        value.release();
        cond.notify();
    }
    p.join();
    CHECK(p.exitcode() == 0);
}

TEST_CASE("Condition: wait_for keeps one deadline across notifies (case 59)") {
    zmp::Condition cond;
    zmp::Process notifier = start([cond] {
        for (int i = 0; i < 3; ++i) {
            sleep_s(0.05);
            std::lock_guard g(cond);
            cond.notify();
        }
    });
    std::unique_lock g(cond);
    const auto t0 = Clock::now();
    CHECK_FALSE(cond.wait_for([] { return false; }, 0.3s));
    const double waited = seconds_since(t0);
    CHECK(waited >= 0.29);
    CHECK(waited < 10);
    g.unlock();
    notifier.join();
}

TEST_CASE("Condition: wait and notify without owning the lock raise") {
    zmp::Condition cond;
    CHECK_THROWS_AS(cond.wait(0.1s), zmp::ValueError);
    CHECK_THROWS_AS(cond.notify(), zmp::ValueError);
    CHECK_THROWS_AS(cond.notify_all(), zmp::ValueError);
    cond.acquire();
    CHECK(in_child([cond] {
              try {
                  cond.notify();
              } catch (const zmp::ValueError&) {
                  return 0;  // held by the parent, not by this process
              }
              return 1;
          }) == 0);
    cond.release();
}

TEST_CASE("Condition over a Lock and over a nested RLock: wait releases every level and restores them") {
    zmp::Lock plain;
    zmp::Condition over_lock(plain);
    {
        std::unique_lock g(over_lock);
        zmp::Process p = start([plain, over_lock] {
            std::lock_guard h(plain);  // possible only while the parent waits
            over_lock.notify();
        });
        CHECK(over_lock.wait(60s));
        CHECK_FALSE(plain.acquire(false));  // held again by the parent
        g.unlock();
        p.join();
        CHECK(p.exitcode() == 0);
    }
    zmp::RLock r;
    zmp::Condition over_rlock(r);
    r.acquire();
    r.acquire();
    zmp::Process p = start([r, over_rlock] {
        std::lock_guard h(r);
        over_rlock.notify();
    });
    CHECK(over_rlock.wait(60s));
    r.release();
    r.release();  // both levels came back
    CHECK_THROWS_AS(r.release(), zmp::ValueError);
    p.join();
    CHECK(p.exitcode() == 0);
}

TEST_CASE("Condition: a waiter that timed out never absorbs a notify") {
    zmp::Condition cond;
    zmp::Semaphore sleeping(0), woken(0);
    {
        std::unique_lock g(cond);
        CHECK_FALSE(cond.wait(0.05s));  // timed out: gone from the queue
    }
    zmp::Process p = start(waiter(cond, sleeping, woken));
    REQUIRE(sleeping.acquire(30s));
    notify_locked(cond);
    CHECK(woken.acquire(30s));
    p.join();
}

// ---- case 60: Event ----------------------------------------------------------------------------

TEST_CASE("Event: wait(0), wait(t), set, is_set, clear, and a set from a child (case 60)") {
    zmp::Event e;
    CHECK_FALSE(e.is_set());
    auto t0 = Clock::now();
    CHECK_FALSE(e.wait(0s));
    CHECK(seconds_since(t0) < 0.9);
    t0 = Clock::now();
    CHECK_FALSE(e.wait(0.2s));
    const double waited = seconds_since(t0);
    CHECK(waited >= 0.19);
    CHECK(waited < 10);
    e.set();
    CHECK(e.is_set());
    CHECK(e.wait());
    CHECK(e.wait(0s));
    e.clear();
    CHECK_FALSE(e.is_set());
    zmp::Process p = start([e] {
        sleep_s(0.1);
        e.set();
    });
    CHECK(e.wait());
    CHECK(e.is_set());
    p.join();
}

TEST_CASE("Event: one set() wakes every waiting process and thread") {
    zmp::Event go;
    zmp::Semaphore waiting(0), done(0);
    std::vector<zmp::Process> ps;
    for (int i = 0; i < 3; ++i) {
        ps.push_back(start([=] {
            waiting.release();
            if (go.wait(60s)) done.release();
        }));
    }
    std::thread t([=] {
        waiting.release();
        if (go.wait(60s)) done.release();
    });
    for (int i = 0; i < 4; ++i) REQUIRE(waiting.acquire(30s));
    go.set();
    for (int i = 0; i < 4; ++i) CHECK(done.acquire(30s));
    t.join();
    for (auto& p : ps) p.join();
}

// ---- cases 61-68: Barrier ----------------------------------------------------------------------

namespace {
// parties-1 children and the parent each call wait() `phases` times.
void lockstep(const zmp::Barrier& b, int phases) {
    std::vector<zmp::Process> ps;
    for (int i = 0; i < b.parties() - 1; ++i) {
        ps.push_back(start([b, phases] {
            for (int k = 0; k < phases; ++k) (void)b.wait(60s);
        }));
    }
    for (int k = 0; k < phases; ++k) (void)b.wait(60s);
    for (auto& p : ps) {
        p.join();
        CHECK(p.exitcode() == 0);
    }
}
}  // namespace

TEST_CASE("Barrier: 5 parties in lockstep for 1 and 10 phases (case 61)") {
    zmp::Barrier b(5);
    CHECK(b.parties() == 5);
    lockstep(b, 1);
    CHECK(b.n_waiting() == 0);
    CHECK_FALSE(b.broken());
    lockstep(b, 10);
    CHECK(b.n_waiting() == 0);
    CHECK_FALSE(b.broken());
}

TEST_CASE("Barrier: the arrival indices of one round are distinct, exactly one is 0 (case 62)") {
    zmp::Barrier b(5);
    auto [reader, writer] = zmp::Pipe(false);
    std::vector<zmp::Process> ps;
    for (int i = 0; i < 4; ++i) ps.push_back(start([b, w = writer]() mutable { w.send(b.wait(60s)); }));
    writer.close();
    std::multiset<int> indices{b.wait(60s)};
    for (int i = 0; i < 4; ++i) indices.insert(reader.recv<int>());
    for (auto& p : ps) p.join();
    CHECK(indices == std::multiset<int>{0, 1, 2, 3, 4});
}

TEST_CASE("Barrier: the action runs once per round, in the last arrival, before anyone is released (case 63)") {
    zmp::Semaphore runs(0);  // counts the action's runs across processes
    zmp::Barrier b(3, [runs] { runs.release(); });
    std::vector<zmp::Process> ps;
    for (int i = 0; i < 2; ++i) {
        ps.push_back(start([b, runs] {
            for (int round = 1; round <= 4; ++round) {
                (void)b.wait(60s);
                if (runs.get_value() < round) zmp::exit(1);  // released before the action ran
            }
        }));
    }
    for (int round = 1; round <= 4; ++round) {
        (void)b.wait(60s);
        CHECK(runs.get_value() >= round);
    }
    for (auto& p : ps) {
        p.join();
        CHECK(p.exitcode() == 0);
    }
    CHECK(runs.get_value() == 4);
}

TEST_CASE("Barrier: an action that throws breaks the barrier, its exception reaches the last party") {
    zmp::Barrier b(2, [] { throw std::runtime_error("action failed"); });
    zmp::Process p = start([b] {
        try {
            (void)b.wait(60s);
        } catch (const zmp::BrokenBarrierError&) {
            zmp::exit(0);
        } catch (const std::runtime_error&) {
            zmp::exit(2);  // it was the last arrival: the action's own exception
        }
        zmp::exit(1);
    });
    int outcome;
    try {
        (void)b.wait(60s);
        outcome = 1;
    } catch (const zmp::BrokenBarrierError&) {
        outcome = 0;
    } catch (const std::runtime_error& e) {
        CHECK(std::string(e.what()) == "action failed");
        outcome = 2;
    }
    p.join();
    // One party ran the action and got its exception, the other got BrokenBarrierError.
    CHECK(std::set<int>{outcome, *p.exitcode()} == std::set<int>{0, 2});
    CHECK(b.broken());
    CHECK_THROWS_AS(b.wait(), zmp::BrokenBarrierError);
}

TEST_CASE("Barrier: abort() breaks it for the N-1 parties waiting (case 64)") {
    zmp::Barrier b(4);
    std::vector<zmp::Process> ps;
    for (int i = 0; i < 3; ++i) {
        ps.push_back(start([b] {
            try {
                (void)b.wait(60s);
            } catch (const zmp::BrokenBarrierError&) {
                zmp::exit(0);
            }
            zmp::exit(1);
        }));
    }
    REQUIRE(eventually([&] { return b.n_waiting() == 3; }));
    b.abort();
    for (auto& p : ps) {
        p.join();
        CHECK(p.exitcode() == 0);
    }
    CHECK(b.broken());
    CHECK(b.n_waiting() == 0);
    CHECK_THROWS_AS(b.wait(), zmp::BrokenBarrierError);
}

TEST_CASE("Barrier: reset() while N-1 parties wait breaks their wait, then all N pass (case 65)") {
    zmp::Barrier b(3);
    std::vector<zmp::Process> ps;
    for (int i = 0; i < 2; ++i) {
        ps.push_back(start([b] {
            try {
                (void)b.wait(60s);
                zmp::exit(1);
            } catch (const zmp::BrokenBarrierError&) {
            }
            (void)b.wait(60s);  // the barrier is usable again
        }));
    }
    REQUIRE(eventually([&] { return b.n_waiting() == 2; }));
    b.reset();
    (void)b.wait(60s);
    for (auto& p : ps) {
        p.join();
        CHECK(p.exitcode() == 0);
    }
    CHECK_FALSE(b.broken());
}

TEST_CASE("Barrier: a broken barrier becomes usable after reset() (case 66)") {
    zmp::Barrier b(2);
    b.abort();
    CHECK(b.broken());
    CHECK_THROWS_AS(b.wait(), zmp::BrokenBarrierError);
    b.reset();
    CHECK_FALSE(b.broken());
    lockstep(b, 3);
    CHECK_FALSE(b.broken());
}

TEST_CASE("Barrier: a party that times out breaks it for everyone, a late one included (case 67)") {
    for (bool constructor_default : {false, true}) {
        zmp::Barrier b(3, {}, constructor_default ? zmp::Timeout(0.2s) : zmp::forever);
        auto waiter = [b, constructor_default] {
            try {
                if (constructor_default)
                    (void)b.wait();
                else
                    (void)b.wait(0.2s);
            } catch (const zmp::BrokenBarrierError&) {
                zmp::exit(0);
            }
            zmp::exit(1);
        };
        zmp::Process p1 = start(waiter);
        zmp::Process p2 = start(waiter);
        p1.join();
        p2.join();
        CHECK(p1.exitcode() == 0);
        CHECK(p2.exitcode() == 0);
        CHECK(b.broken());
        CHECK_THROWS_AS(b.wait(60s), zmp::BrokenBarrierError);  // the late party
    }
}

TEST_CASE("Barrier: wait(0) by a party that is not the last breaks it at once") {
    zmp::Barrier b(2);
    const auto t0 = Clock::now();
    CHECK_THROWS_AS(b.wait(0s), zmp::BrokenBarrierError);
    CHECK(seconds_since(t0) < 5);
    CHECK(b.broken());
}

TEST_CASE("Barrier(1) never blocks, and 3 processes x 100 phases arrive grouped in order (case 68)") {
    zmp::Barrier one(1);
    for (int i = 0; i < 5; ++i) CHECK(one.wait() == 0);

    zmp::Barrier b(3);
    zmp::Lock lock;
    auto ends = zmp::Pipe(false);  // named, not bound: clang 14 cannot capture a structured binding
    auto& reader = ends.first;
    auto& writer = ends.second;
    constexpr int kPhases = 100;
    std::vector<zmp::Process> ps;
    for (int i = 0; i < 3; ++i) {
        ps.push_back(start([=]() mutable {
            for (int phase = 0; phase < kPhases; ++phase) {
                {
                    std::lock_guard g(lock);
                    writer.send(phase);
                }
                (void)b.wait(60s);
            }
        }));
    }
    writer.close();
    bool grouped = true;
    for (int phase = 0; phase < kPhases; ++phase)
        for (int k = 0; k < 3; ++k) grouped = grouped && reader.recv<int>() == phase;
    CHECK(grouped);
    for (auto& p : ps) p.join();
}

// ---- owner death -------------------------------------------------------------------------------

TEST_CASE("SIGKILL a process holding a Lock: another process acquires it within 1 s and is told the owner died") {
    zmp::Lock lock;
    zmp::Event held;
    zmp::Process owner = start([lock, held] {
        lock.acquire();
        held.set();
        sleep_s(600);
    });
    REQUIRE(held.wait(30s));
    CHECK_FALSE(lock.acquire(false));
    owner.kill();
    owner.join();
    CHECK(lock.acquire(1s));
    CHECK(lock.owner_died());
    lock.release();
    CHECK(lock.acquire());
    CHECK_FALSE(lock.owner_died());  // told once: this acquire took it from a live release
    lock.release();
}

TEST_CASE("a process blocked in acquire() gets a Lock, RLock or Semaphore whose holder is killed") {
    zmp::Lock lock;
    zmp::RLock rlock;
    zmp::Semaphore sem(1);
    zmp::Event held;
    zmp::Process owner = start([=] {
        lock.acquire();
        rlock.acquire();
        rlock.acquire();
        sem.acquire();
        held.set();
        sleep_s(600);
    });
    REQUIRE(held.wait(30s));
    zmp::Semaphore blocked(0);
    zmp::Process taker = start([=] {
        blocked.release();
        int failures = 0;
        failures += !(lock.acquire(60s) && lock.owner_died());
        failures += !(rlock.acquire(60s) && rlock.owner_died());
        failures += !(sem.acquire(60s) && sem.owner_died());
        rlock.release();  // one level: it took it afresh, not with the dead owner's two levels
        failures += rlock.acquire(false) ? 0 : 1;
        zmp::exit(failures);  // a normal exit: the semaphore unit it took stays taken
    });
    REQUIRE(blocked.acquire(30s));
    sleep_s(0.1);  // let it block
    owner.kill();
    owner.join();
    taker.join();
    CHECK(taker.exitcode() == 0);
    CHECK(sem.get_value() == 0);
}

TEST_CASE("semaphore units: a killed holder's come back, a normal exit keeps what it took (a signal stays consumed)") {
    zmp::Semaphore items(1);
    zmp::Event took;
    zmp::Process killed = start([items, took] {
        items.acquire();
        took.set();
        sleep_s(600);
    });
    REQUIRE(took.wait(30s));
    CHECK(items.get_value() == 0);
    killed.kill();
    killed.join();
    CHECK(items.acquire(30s));  // the killed holder's unit came back
    CHECK(items.owner_died());
    items.release();
    CHECK(in_child([items] { return items.acquire(false) ? 0 : 1; }) == 0);  // consumed, then a normal exit
    sleep_s(0.2);
    CHECK(items.get_value() == 0);
}

TEST_CASE("SIGKILL a process waiting at a Barrier(3): the others get BrokenBarrierError") {
    zmp::Barrier b(3);
    auto waiter = [b] {
        try {
            (void)b.wait();
        } catch (const zmp::BrokenBarrierError&) {
            zmp::exit(0);
        }
        zmp::exit(1);
    };
    zmp::Process victim = start(waiter);
    zmp::Process survivor = start(waiter);
    REQUIRE(eventually([&] { return b.n_waiting() == 2; }));
    victim.kill();
    victim.join();
    survivor.join();
    CHECK(survivor.exitcode() == 0);
    CHECK(b.broken());
    CHECK_THROWS_AS(b.wait(), zmp::BrokenBarrierError);
    b.reset();
    lockstep(b, 2);  // usable again
}

TEST_CASE("a Condition waiter that is killed is dropped: the next notify wakes a live one") {
    zmp::Condition cond;
    zmp::Semaphore sleeping(0), woken(0);
    zmp::Process first = start(waiter(cond, sleeping, woken));  // the oldest waiter: notify() would pick it
    REQUIRE(sleeping.acquire(30s));
    { std::lock_guard g(cond); }  // it is inside wait() now
    zmp::Process second = start(waiter(cond, sleeping, woken));
    REQUIRE(sleeping.acquire(30s));
    { std::lock_guard g(cond); }
    first.kill();
    first.join();
    sleep_s(0.1);  // the broker notices the death
    notify_locked(cond);
    CHECK(woken.acquire(30s));
    second.join();
    CHECK(second.exitcode() == 0);
}

TEST_CASE("8 processes x 10,000 increments of a counter in a file under a Lock give the exact total") {
    char path[] = "/tmp/zmp-counter-XXXXXX";
    const int fd = ::mkstemp(path);
    REQUIRE(fd >= 0);
    ::unlink(path);
    long zero = 0;
    REQUIRE(::pwrite(fd, &zero, sizeof zero, 0) == sizeof zero);
    zmp::Lock lock;
    std::vector<zmp::Process> ps;
    for (int i = 0; i < 8; ++i) {
        ps.push_back(start([lock, fd] {
            for (int k = 0; k < 10000; ++k) {
                std::lock_guard g(lock);
                long value = 0;
                if (::pread(fd, &value, sizeof value, 0) != sizeof value) zmp::exit(2);
                ++value;
                if (::pwrite(fd, &value, sizeof value, 0) != sizeof value) zmp::exit(3);
            }
        }));
    }
    for (auto& p : ps) {
        p.join();
        CHECK(p.exitcode() == 0);
    }
    long total = 0;
    REQUIRE(::pread(fd, &total, sizeof total, 0) == sizeof total);
    ::close(fd);
    CHECK(total == 80000);
}

// ---- handles travel ----------------------------------------------------------------------------

TEST_CASE("handles sent through a Pipe to a sibling that never inherited them keep working") {
    auto [to_child, from_parent] = zmp::Pipe();
    // The child starts before any of the objects exists: it can only get them in a message.
    zmp::Process sibling([c = from_parent]() mutable {
        auto [lock, event, sem, bounded, cond, barrier] = c.recv<
            std::tuple<zmp::Lock, zmp::Event, zmp::Semaphore, zmp::BoundedSemaphore, zmp::Condition, zmp::Barrier>>();
        int result = 0;
        result |= lock.acquire(false) ? 1 : 0;  // the parent holds it
        c.send(std::string("tried"));
        result |= lock.acquire(60s) ? 0 : 2;  // and releases it after "tried"
        lock.release();
        result |= event.wait(60s) ? 0 : 4;
        result |= sem.get_value() == 3 ? 0 : 8;
        try {
            bounded.release();
            result |= 16;
        } catch (const zmp::ValueError&) {
        }
        {
            std::lock_guard g(cond);
            cond.notify();
        }
        result |= barrier.wait(60s) >= 0 ? 0 : 32;
        zmp::exit(result);
    });
    sibling.start();
    zmp::Lock lock;
    zmp::Event event;
    zmp::Semaphore sem(3);
    zmp::BoundedSemaphore bounded(1);
    zmp::Condition cond;
    zmp::Barrier barrier(2);
    lock.acquire();
    std::unique_lock g(cond);
    to_child.send(std::make_tuple(lock, event, sem, bounded, cond, barrier));
    CHECK(to_child.recv<std::string>() == "tried");
    lock.release();
    event.set();
    CHECK(cond.wait(60s));
    g.unlock();
    (void)barrier.wait(60s);
    sibling.join();
    CHECK(sibling.exitcode() == 0);
}

namespace {
// A spawn or forkserver child gets its handles only as arguments: it shares no memory with us.
void use_travelled_handles(zmp::Lock lock, zmp::Event event, zmp::Semaphore sem, zmp::Condition cond,
                           zmp::Barrier barrier) {
    int result = lock.acquire(false) ? 1 : 0;  // the parent holds it until the barrier
    result |= sem.acquire(false) ? 0 : 2;
    {
        std::lock_guard g(cond);
        cond.notify();
    }
    result |= event.wait(60s) ? 0 : 4;
    result |= barrier.wait(60s) >= 0 ? 0 : 8;
    result |= lock.acquire(60s) ? 0 : 16;  // released by the parent after the barrier
    lock.release();
    zmp::exit(result);
}
}  // namespace

TEST_CASE("handles work as Process arguments under every start method") {
    const auto method = GENERATE(zmp::StartMethod::fork, zmp::StartMethod::spawn, zmp::StartMethod::forkserver);
    zmp::Lock lock;
    zmp::Event event;
    zmp::Semaphore sem(1);
    zmp::Condition cond;
    zmp::Barrier barrier(2);
    lock.acquire();
    std::unique_lock g(cond);
    zmp::Process p = zmp::get_context(method).Process(use_travelled_handles, lock, event, sem, cond, barrier);
    p.start();
    CHECK(cond.wait(60s));
    g.unlock();
    event.set();
    (void)barrier.wait(60s);
    lock.release();
    p.join();
    CHECK(p.exitcode() == 0);
    CHECK(sem.get_value() == 0);  // the child exited normally: the unit it took stays taken
}

namespace {
// A pool task: adds `amount` to a shared counter by a read-modify-write that only the lock makes safe.
int add_under_lock(zmp::Lock lock, zmp::RawValue<long> counter, int amount) {
    std::lock_guard g(lock);
    const long before = counter.value();
    std::this_thread::yield();
    counter.set(before + amount);
    return amount;
}
}  // namespace

TEST_CASE("a Lock works as a Pool task argument under every start method") {
    const auto method = GENERATE(zmp::StartMethod::fork, zmp::StartMethod::spawn, zmp::StartMethod::forkserver);
    zmp::Lock lock;
    zmp::RawValue<long> counter(0);
    zmp::Pool pool(zmp::PoolOptions{.processes = 2, .context = method});
    std::vector<zmp::AsyncResult<int>> results;
    for (int i = 1; i <= 200; ++i) results.push_back(pool.apply_async(add_under_lock, lock, counter, i));
    long sum = 0;
    for (auto& r : results) sum += r.get(60s);
    CHECK(sum == 200 * 201 / 2);
    CHECK(counter.value() == 200 * 201 / 2);
}

TEST_CASE("a handle decodes to the same object, a handle of the wrong type is a ProtocolError") {
    zmp::Lock lock;
    zmp::Event event;
    auto [a, b] = zmp::Pipe();
    a.send(lock);
    CHECK(b.recv<zmp::Lock>() == lock);
    a.send(event);
    CHECK_THROWS_AS(b.recv<zmp::Lock>(), zmp::ProtocolError);
    a.send(std::string("not a handle"));
    CHECK_THROWS_AS(b.recv<zmp::Event>(), zmp::ProtocolError);
    zmp::BoundedSemaphore bounded(1);
    a.send(bounded);
    CHECK(b.recv<zmp::Semaphore>() == bounded);  // a BoundedSemaphore is a Semaphore
    zmp::Semaphore plain(1);
    a.send(plain);
    CHECK_THROWS_AS(b.recv<zmp::BoundedSemaphore>(), zmp::ProtocolError);
}

TEST_CASE("a Barrier with an action cannot travel in a message, one without can") {
    zmp::Barrier with_action(2, [] {});
    zmp::Barrier plain(2);
    auto [a, b] = zmp::Pipe();
    CHECK_THROWS_AS(a.send(with_action), zmp::ValueError);
    a.send(plain);
    CHECK(b.recv<zmp::Barrier>() == plain);
}

TEST_CASE("children of children use the root's broker: objects made anywhere work everywhere") {
    auto [to_root, from_child] = zmp::Pipe();
    zmp::Process child([c = to_root]() mutable {
        zmp::Event go;  // made in the child, through the root's broker
        zmp::Lock lock;
        lock.acquire();
        zmp::Process grandchild([go, lock] {
            if (!go.wait(60s)) zmp::exit(1);
            if (!lock.acquire(60s)) zmp::exit(2);  // released by the root
        });
        grandchild.start();
        c.send(std::make_tuple(go, lock));
        grandchild.join();
        zmp::exit(grandchild.exitcode().value_or(9));
    });
    child.start();
    auto [go, lock] = from_child.recv<std::tuple<zmp::Event, zmp::Lock>>();
    lock.release();  // any process may release a Lock
    go.set();
    child.join();
    CHECK(child.exitcode() == 0);
}

// ---- bad input at the broker -------------------------------------------------------------------

TEST_CASE("garbage sent straight to the broker is counted or answered, and every client keeps being served") {
    using namespace zmp::detail::broker;
    zmp::Lock lock;  // starts the broker
    zmp::Condition cond;
    const std::string endpoint = zmp::detail::this_run().broker_endpoint();
    REQUIRE_FALSE(endpoint.empty());

    // A real client in another process keeps using the broker the whole time.
    zmp::Event stop;
    zmp::Semaphore rounds(0);
    zmp::Process client = start([=] {
        while (!stop.is_set()) {
            if (!lock.acquire(60s)) zmp::exit(1);
            lock.release();
            std::lock_guard g(cond);
            cond.notify();
            (void)cond.wait(0s);
            rounds.release();
        }
    });

    zmq::socket_t raw = zmp::transport::open_socket(zmp::detail::zmq_context(), zmq::socket_type::dealer);
    raw.connect(endpoint);
    auto send = [&](const std::string& bytes) { raw.send(zmq::buffer(bytes), zmq::send_flags::none); };
    auto envelope = [](std::initializer_list<std::int64_t> head, std::initializer_list<std::int64_t> args) {
        msgpack::sbuffer out;
        msgpack::packer<msgpack::sbuffer> pk(out);
        pk.pack_array(4);
        for (auto v : head) pk.pack(v);
        pk.pack_array(static_cast<std::uint32_t>(args.size()));
        for (auto v : args) pk.pack(v);
        return std::string(out.data(), out.size());
    };
    std::mt19937 rng(42);
    for (int i = 0; i < 500; ++i) {  // random bytes
        std::string junk(rng() % 64, '\0');
        for (auto& ch : junk) ch = static_cast<char>(rng());
        send(junk);
    }
    send("");                                                                        // empty
    send(std::string("\xdd\xff\xff\xff\xff", 5));                                    // a 4-billion-element array header
    send(envelope({1, 0, 7}, {}).substr(0, 3));                                      // truncated
    send(envelope({2, 0, 8}, {static_cast<int>(getpid()), 1}));                      // CREATE before HELLO
    send(envelope({1, 0, 9}, {static_cast<int>(getpid()), 1}));                      // HELLO
    send(envelope({99, 0, 10}, {}));                                                 // unknown op
    send(envelope({3, 123456789, 11}, {1, -1, 0}));                                  // unknown object
    send(envelope({3, static_cast<std::int64_t>(lock.handle().ref().id), 12}, {}));  // missing arguments
    send(envelope({2, 0, 13}, {42, 0, 0, 0, 0}));                                    // unknown kind
    send(envelope({2, 0, 14}, {3, -5, 0, 0, 0}));                                    // Semaphore(-5)
    raw.send(zmq::buffer(std::string("two")), zmq::send_flags::sndmore);             // two frames
    raw.send(zmq::buffer(std::string("frames")), zmq::send_flags::none);
    send(std::string(100 * 1024, 'x'));  // larger than any envelope: dropped
    // Queue batches that lie about their items, and a batch where none belongs.
    zmp::Queue<int> queue;
    const auto qid = static_cast<std::int64_t>(queue.core().to_wire().id);
    auto send_batch = [&](const std::string& env, const std::string& batch) {
        raw.send(zmq::buffer(env), zmq::send_flags::sndmore);
        raw.send(zmq::buffer(batch), zmq::send_flags::none);
    };
    std::string one_item;
    append_item(one_item, "\x01");
    const auto put_op = static_cast<std::int64_t>(Op::queue_put);
    send_batch(envelope({put_op, qid, 15}, {1, -1, 3}), one_item);               // three announced, one there
    send_batch(envelope({put_op, qid, 16}, {1, -1, 1}), one_item.substr(0, 3));  // truncated length
    send_batch(envelope({put_op, qid, 17}, {1, -1, 1}), one_item + "x");         // bytes after the item
    send_batch(envelope({put_op, qid, 18}, {1, -1, 1}), std::string("\xff\xff\xff\x7f", 4));  // a 2 GiB item
    send_batch(envelope({put_op, static_cast<std::int64_t>(lock.handle().ref().id), 19}, {1, -1, 1}),
               one_item);  // not a queue
    send_batch(envelope({static_cast<std::int64_t>(Op::queue_get), qid, 20}, {0, 0, 1}),
               one_item);  // GET takes no batch

    // The broker answered what it could read (on this or a fresh connection) and kept serving.
    const int before = rounds.get_value();
    CHECK(rounds.acquire(60s));
    REQUIRE(eventually([&] { return rounds.get_value() >= before + 3; }));
    stop.set();
    client.join();
    CHECK(client.exitcode() == 0);

    zmq::socket_t probe = zmp::transport::open_socket(zmp::detail::zmq_context(), zmq::socket_type::dealer);
    probe.connect(endpoint);
    msgpack::sbuffer out;
    encode_request(out, Op::hello, 0, 1, {::getpid(), 1});
    probe.send(zmq::buffer(out.data(), out.size()), zmq::send_flags::none);
    out.clear();
    encode_request(out, Op::stats, 0, 2, {});
    probe.send(zmq::buffer(out.data(), out.size()), zmq::send_flags::none);
    std::vector<zmq::message_t> frames;
    Reply stats;
    for (int i = 0; i < 2; ++i) {
        REQUIRE(zmp::transport::recv_message(probe, frames, 1, std::chrono::milliseconds(30000)));
        stats = decode_reply(frames[0].data(), frames[0].size());
    }
    REQUIRE(stats.rid == 2);
    CHECK(stats.value(0) >= 400);  // dropped: unreadable frames
    CHECK(stats.value(1) >= 12);   // answered with an error
    // And this process's own objects still work; the queue took none of the lies.
    CHECK(lock.acquire(60s));
    lock.release();
    CHECK(queue.qsize() == 0);
    queue.put(5);
    CHECK(queue.get(60s) == 5);
}
