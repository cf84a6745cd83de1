// Value, Array, RawValue, RawArray and their lock, with real processes.
#include <catch2/catch.hpp>

#include <signal.h>
#include <unistd.h>

#include <cstdint>
#include <mutex>
#include <numeric>
#include <optional>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "runtime/run_directory.hpp"
#include "test_util.hpp"
#include "zmp/context.hpp"
#include "zmp/pipe.hpp"
#include "zmp/process.hpp"
#include "zmp/sharedctypes.hpp"
#include "zmp/transport/codec.hpp"

using namespace std::chrono_literals;

namespace {

// Names in /dev/shm of the segments this run's library made (they start with the run's name).
std::vector<std::string> run_segments() {
    const std::string& dir = zmp::detail::run_directory().path();
    return test_util::segments_starting(dir.substr(dir.rfind('/') + 1) + "-");
}

void join_all(std::vector<zmp::Process>& processes) {
    for (auto& p : processes) p.start();
    for (auto& p : processes) {
        p.join();
        CHECK(p.exitcode() == 0);
    }
}

// `processes` children, each adding 1 to `counter` `each` times, under its lock, as Python's
// `with counter.get_lock(): counter.value += 1`; all started, joined and checked.
void run_locked_incrementers(const zmp::Value<long>& counter, int processes, int each) {
    std::vector<zmp::Process> workers;
    for (int w = 0; w < processes; ++w) {
        workers.emplace_back([counter, each] {
            for (int k = 0; k < each; ++k) {
                std::lock_guard guard(counter.get_lock());
                counter.set(counter.value() + 1);
            }
        });
    }
    join_all(workers);
}

struct Point {
    int x;
    double y;
};

}  // namespace

TEST_CASE("Values of several types changed by a child are seen by the parent") {
    zmp::Value<int> i(7);
    zmp::Value<double> d(1.0 / 3);
    zmp::Value<std::int16_t> h(-5);
    zmp::Value<std::int64_t> q(std::int64_t{1} << 33);
    zmp::Value<char> c('x');
    zmp::RawValue<double> raw(2.5);
    CHECK(i.value() == 7);
    CHECK(d.value() == 1.0 / 3);
    CHECK(q.value() == std::int64_t{1} << 33);
    CHECK(raw.value() == 2.5);

    zmp::Process child([=] {
        i.set(-i.value());
        d.set(d.value() * 3);
        h.set(static_cast<std::int16_t>(h.value() * 2));
        q.set(q.value() + 1);
        c.set('c');
        raw.set(raw.value() + 1);
    });
    child.start();
    child.join();
    REQUIRE(child.exitcode() == 0);
    CHECK(i.value() == -7);
    CHECK(d.value() == 1.0);
    CHECK(h.value() == -10);
    CHECK(q.value() == (std::int64_t{1} << 33) + 1);
    CHECK(c.value() == 'c');
    CHECK(raw.value() == 3.5);
}

TEST_CASE("Arrays from a size, a list or a range, changed by a child with slices and prefix sums") {
    zmp::Array<int> zeros(10);
    CHECK(zeros.size() == 10);
    CHECK(zeros.slice() == std::vector<int>(10, 0));
    zmp::Array<int> arr(test_util::generated(10, [](long i) { return static_cast<int>(i); }));
    CHECK(arr.slice() == std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
    zmp::Array<double> listed({0.5, 1.5});
    CHECK(listed.size() == 2);
    zmp::RawArray<int> raw(std::vector<int>{1, 2, 3});
    CHECK(raw.slice() == std::vector<int>{1, 2, 3});

    zmp::Process child([=] {
        // The guide's test: arr[:5] = [...], then prefix sums.
        const std::vector<int> head{10, 20, 30, 40, 50};
        arr.set_slice(0, 5, head);
        std::lock_guard guard(arr.get_lock());
        for (std::size_t k = 1; k < arr.size(); ++k) arr[k] += arr[k - 1];
        for (int& x : raw) x = -x;
        zeros.set(-1, 99);
    });
    child.start();
    child.join();
    REQUIRE(child.exitcode() == 0);
    std::vector<int> expected{10, 20, 30, 40, 50, 5, 6, 7, 8, 9};
    std::partial_sum(expected.begin(), expected.end(), expected.begin());
    CHECK(arr.slice() == expected);
    CHECK(raw.slice() == std::vector<int>{-1, -2, -3});
    CHECK(zeros.get(9) == 99);
}

TEST_CASE("Array indices and slices follow Python") {
    zmp::Array<int> arr({1, 2, 3, 4, 5});
    CHECK(arr.get(-1) == 5);
    CHECK(arr.get(0) == 1);
    CHECK_THROWS_AS(arr.get(5), zmp::IndexError);
    CHECK_THROWS_AS(arr.get(-6), zmp::IndexError);
    CHECK_THROWS_AS(arr.set(7, 0), zmp::IndexError);
    CHECK(arr.slice(1, 3) == std::vector<int>{2, 3});
    CHECK(arr.slice(-2, 100) == std::vector<int>{4, 5});
    CHECK(arr.slice(3, 1).empty());
    CHECK(arr.slice(-100, 2) == std::vector<int>{1, 2});
    const std::vector<int> two{8, 9};
    arr.set_slice(-2, 5, two);
    CHECK(arr.slice() == std::vector<int>{1, 2, 3, 8, 9});
    CHECK_THROWS_WITH(arr.set_slice(0, 3, two), "Can only assign sequence of same size");
    CHECK(std::vector<int>(arr.begin(), arr.end()) == arr.slice());
    CHECK(arr.get_obj().size() == 5);
    zmp::Array<int> none(0);
    CHECK(none.empty());
    CHECK(none.slice().empty());
}

TEST_CASE("lock options: true makes a lock, false and Raw have none, a given lock is shared") {
    zmp::Value<int> with(1);
    CHECK(with.has_lock());
    zmp::Value<int> without(1, false);
    CHECK_FALSE(without.has_lock());
    CHECK_THROWS_AS(without.get_lock(), zmp::ValueError);
    zmp::Array<int> raw_array(3, false);
    CHECK_FALSE(raw_array.has_lock());
    zmp::RawValue<int> raw(0);
    CHECK_FALSE(raw.has_lock());

    zmp::Value<int> sharing(2, with.get_lock());
    zmp::Array<int> sharing_too({1, 2}, with.get_lock());
    CHECK(sharing.get_lock() == with.get_lock());
    CHECK(sharing_too.get_lock() == with.get_lock());
    CHECK_FALSE(sharing.get_lock() == zmp::Value<int>(0).get_lock());
    CHECK_THROWS_AS(zmp::Value<int>(0, zmp::ValueLock()), zmp::ValueError);

    // Held through one Value, the lock of the other is taken too, in another process.
    std::lock_guard guard(with.get_lock());
    auto [reader, writer] = zmp::Pipe(false);
    zmp::Process probe([sharing, w = writer]() mutable { w.send(sharing.get_lock().try_lock()); });
    probe.start();
    writer.close();
    CHECK_FALSE(reader.recv<bool>());
    probe.join();
    // A handle received in a message keeps sharing it.
    auto wire = zmp::transport::encode(sharing);
    auto back = zmp::transport::decode_as<zmp::Value<int>>(wire.data(), wire.size());
    CHECK(back.get_lock() == with.get_lock());
    CHECK(back.get_lock().owned());
}

TEST_CASE("Values and Arrays of a trivially copyable struct") {
    zmp::Value<Point> point(Point{1, 2.5});
    zmp::Array<Point> points(3);
    zmp::Process child([=] {
        std::lock_guard guard(point.get_lock());  // value() and set() take it again: it is recursive
        Point p = point.value();
        p.x += 10;
        p.y *= 2;
        point.set(p);
        for (int k = 0; k < 3; ++k) points.set(k, Point{k, k * 0.5});
    });
    child.start();
    child.join();
    REQUIRE(child.exitcode() == 0);
    CHECK(point.value().x == 11);
    CHECK(point.value().y == 5.0);
    CHECK(points.get(2).x == 2);
    CHECK(points.get(2).y == 1.0);
}

TEST_CASE("4 processes x 100000 increments under the lock are exact") {
    zmp::Value<long> counter(0);
    run_locked_incrementers(counter, 4, 100000);
    CHECK(counter.value() == 400000);
}

TEST_CASE("4 processes x 100000 fetch_add without the lock are exact") {
    zmp::RawValue<long> counter(0);
    zmp::Value<double> sum(0.0, false);
    std::vector<zmp::Process> workers;
    for (int w = 0; w < 4; ++w) {
        workers.emplace_back([counter, sum] {
            for (int k = 0; k < 100000; ++k) counter.fetch_add(1);
            for (int k = 0; k < 1000; ++k) sum.fetch_add(0.5);
        });
    }
    join_all(workers);
    CHECK(counter.load() == 400000);
    CHECK(sum.load() == 2000.0);
    long expected = 400000;
    CHECK(counter.compare_exchange(expected, 1));
    CHECK_FALSE(counter.compare_exchange(expected, 2));
    CHECK(expected == 1);
    CHECK(counter.exchange(5) == 1);
    CHECK(counter.fetch_sub(2) == 5);
    counter.store(-1);
    CHECK(counter.value() == -1);
}

TEST_CASE("a process SIGKILLed inside the locked section: the next holder is told and the counter keeps working") {
    zmp::Value<long> counter(0);
    auto [reader, writer] = zmp::Pipe(false);
    zmp::Process holder([counter, w = writer]() mutable {
        counter.get_lock().lock();
        counter.set(counter.value() + 1);
        w.send(std::string("inside"));
        for (;;) ::pause();
    });
    holder.start();
    writer.close();
    REQUIRE(reader.recv<std::string>() == "inside");
    CHECK_FALSE(counter.get_lock().try_lock());  // really held
    holder.kill();
    holder.join();
    CHECK(holder.exitcode() == -SIGKILL);

    auto [told_reader, told_writer] = zmp::Pipe(false);
    zmp::Process next([counter, w = told_writer]() mutable {
        std::lock_guard guard(counter.get_lock());
        w.send(counter.get_lock().owner_died());
        counter.set(counter.value() + 1);
    });
    next.start();
    told_writer.close();
    CHECK(told_reader.recv<bool>());
    next.join();
    CHECK(next.exitcode() == 0);

    run_locked_incrementers(counter, 2, 10000);
    std::lock_guard guard(counter.get_lock());
    CHECK_FALSE(counter.get_lock().owner_died());  // the recovery was reported once
    CHECK(counter.value() == 2 + 20000);
}

TEST_CASE("the lock is recursive, owned by one thread, and acquire follows Python") {
    zmp::Value<int> v(0);
    zmp::ValueLock& lock = v.get_lock();
    CHECK_FALSE(lock.owned());
    CHECK_THROWS_WITH(lock.unlock(), "cannot release un-acquired lock");
    CHECK(lock.acquire());
    CHECK(lock.try_lock());
    CHECK(lock.acquire(true, 10ms));
    CHECK(lock.owned());
    CHECK_FALSE(lock.owner_died());

    // Another process: try_lock, acquire(false) and a timed acquire all fail while it is held.
    auto [reader, writer] = zmp::Pipe(false);
    zmp::Process other([v, w = writer]() mutable {
        const bool tried = v.get_lock().try_lock();
        const bool nonblocking = v.get_lock().acquire(false);
        const bool timed = v.get_lock().acquire(true, 50ms);
        const bool negative = v.get_lock().acquire(true, -1s);
        w.send(std::make_tuple(tried, nonblocking, timed, negative));
        w.send(v.get_lock().acquire(true, 60s));  // blocks until the parent lets go
        v.set(42);
        v.get_lock().release();
    });
    other.start();
    writer.close();
    CHECK(reader.recv<std::tuple<bool, bool, bool, bool>>() == std::make_tuple(false, false, false, false));
    lock.release();
    lock.unlock();
    CHECK(lock.owned());  // still once
    lock.unlock();
    CHECK_FALSE(lock.owned());
    CHECK(reader.recv<bool>());
    other.join();
    CHECK(v.value() == 42);

    // Another thread of this process does not own what this one holds.
    std::lock_guard guard(lock);
    bool other_thread_owned = true, other_thread_took = true;
    std::thread([&] {
        other_thread_owned = lock.owned();
        other_thread_took = lock.try_lock();
    }).join();
    CHECK_FALSE(other_thread_owned);
    CHECK_FALSE(other_thread_took);
}

TEST_CASE("handles travel through a Pipe to a sibling process that never inherited them") {
    auto [a_end, b_end] = zmp::Pipe();
    // B starts first: nothing of what A makes can be in its memory.
    zmp::Process b([c = b_end]() mutable {
        auto [counter, arr, raw] = c.recv<std::tuple<zmp::Value<long>, zmp::Array<int>, zmp::RawArray<int>>>();
        {
            std::lock_guard guard(arr.get_lock());
            for (int& x : arr) x *= 2;
            counter.set(counter.value() + arr.size());
        }
        raw[0] = 7;
        c.send(std::string("done"));
    });
    b.start();
    zmp::Process a([c = a_end]() mutable {
        zmp::Value<long> counter(100);
        zmp::Array<int> arr({1, 2, 3});
        zmp::RawArray<int> raw(1);
        c.send(std::make_tuple(counter, arr, raw));
        if (c.recv<std::string>() != "done") zmp::exit(3);
        if (counter.value() != 103 || arr.slice() != std::vector<int>{2, 4, 6} || raw[0] != 7) zmp::exit(4);
    });
    a.start();
    a_end.close();
    b_end.close();
    a.join();
    b.join();
    CHECK(a.exitcode() == 0);
    CHECK(b.exitcode() == 0);

    // The parent to a child started before the Value existed.
    auto [here, there] = zmp::Pipe();
    zmp::Process late([c = there]() mutable {
        auto v = c.recv<zmp::Value<double>>();
        v.fetch_add(0.5);
        c.send(v.value());
    });
    late.start();
    there.close();
    zmp::Value<double> v(1.0);
    here.send(v);
    CHECK(here.recv<double>() == 1.5);
    late.join();
    CHECK(v.value() == 1.5);
}

TEST_CASE("a received handle of another kind or type raises ProtocolError") {
    zmp::Value<int> v(1);
    zmp::Array<int> arr(2);
    auto v_wire = zmp::transport::encode(v);
    auto arr_wire = zmp::transport::encode(arr);
    CHECK_THROWS_AS(zmp::transport::decode_as<zmp::Value<double>>(v_wire.data(), v_wire.size()), zmp::ProtocolError);
    CHECK_THROWS_AS(zmp::transport::decode_as<zmp::Value<unsigned>>(v_wire.data(), v_wire.size()), zmp::ProtocolError);
    CHECK_THROWS_AS(zmp::transport::decode_as<zmp::Array<int>>(v_wire.data(), v_wire.size()), zmp::ProtocolError);
    CHECK_THROWS_AS(zmp::transport::decode_as<zmp::Value<int>>(arr_wire.data(), arr_wire.size()), zmp::ProtocolError);
    auto other = zmp::transport::encode(std::string("not a handle"));
    CHECK_THROWS_AS(zmp::transport::decode_as<zmp::Value<int>>(other.data(), other.size()), zmp::ProtocolError);
    // A forged name outside zmp's namespace is refused before anything is mapped.
    zmp::detail::SharedArrayWire forged = v.core().to_wire("zmp.Value");
    forged.segment = "/psm_forged";
    auto forged_wire = zmp::transport::encode(forged);
    CHECK_THROWS_AS(zmp::transport::decode_as<zmp::Value<int>>(forged_wire.data(), forged_wire.size()),
                    zmp::ProtocolError);
    // A RawValue may view a locked Value, without its lock.
    auto raw = zmp::transport::decode_as<zmp::RawValue<int>>(v_wire.data(), v_wire.size());
    CHECK_FALSE(raw.has_lock());
    CHECK(raw.value() == 1);
    // Empty handles.
    zmp::Value<int> empty;
    CHECK_THROWS_AS(empty.value(), zmp::ValueError);
    CHECK_THROWS_AS(zmp::transport::encode(empty), zmp::ValueError);
    CHECK_THROWS_AS(zmp::Array<int>().size(), zmp::ValueError);
}

TEST_CASE("the creator's last handle removes the segment, and processes that mapped it keep it") {
    const std::size_t before = run_segments().size();
    {
        zmp::Value<int> v(1);
        zmp::Value<int> copy = v;
        CHECK(run_segments().size() == before + 1);
    }
    CHECK(run_segments().size() == before);

    auto v = std::make_optional<zmp::Value<int>>(5);
    auto [here, there] = zmp::Pipe();
    zmp::Process child([c = there, mine = *v]() mutable {
        (void)c.recv<int>();  // the parent has dropped its handle
        mine.fetch_add(1);
        c.send(mine.value());
    });
    child.start();
    there.close();
    auto wire = zmp::transport::encode(*v);
    // Decoding in the creator finds its own mapping.
    CHECK(zmp::transport::decode_as<zmp::Value<int>>(wire.data(), wire.size()).get_lock() == v->get_lock());
    v.reset();
    CHECK(run_segments().size() == before);
    here.send(0);
    CHECK(here.recv<int>() == 6);
    child.join();
    CHECK_THROWS_AS(zmp::transport::decode_as<zmp::Value<int>>(wire.data(), wire.size()), zmp::FileNotFoundError);
}

TEST_CASE("a child that creates a Value and exits leaves nothing once its handles are gone") {
    const std::size_t before = run_segments().size();
    auto [reader, writer] = zmp::Pipe(false);
    zmp::Process child([w = writer]() mutable {
        zmp::Array<int> arr(1000);
        w.send(std::string("made"));
    });
    child.start();
    writer.close();
    CHECK(reader.recv<std::string>() == "made");
    child.join();
    CHECK(child.exitcode() == 0);
    CHECK(run_segments().size() == before);
}

namespace {
// A spawn or forkserver child that never inherited the mappings: it maps them from the handles.
void add_in_child(zmp::Value<long> counter, zmp::Array<int> numbers, zmp::RawValue<double> raw, int times) {
    for (int i = 0; i < times; ++i) {
        std::lock_guard lock(counter.get_lock());
        counter.set(counter.value() + 1);
    }
    for (std::size_t i = 0; i < numbers.size(); ++i) numbers.set(i, numbers.get(i) * 10);
    raw.set(2.5);
}
}  // namespace

TEST_CASE("Value, Array and RawValue handles work as arguments under every start method") {
    const auto method = GENERATE(zmp::StartMethod::fork, zmp::StartMethod::spawn, zmp::StartMethod::forkserver);
    zmp::Value<long> counter(5);
    zmp::Array<int> numbers{1, 2, 3};
    zmp::RawValue<double> raw(0.0);
    auto ctx = zmp::get_context(method);
    zmp::Process first = ctx.Process(add_in_child, counter, numbers, raw, 1000);
    first.start();
    first.join();
    CHECK(first.exitcode() == 0);
    CHECK(counter.value() == 1005);
    CHECK(numbers.get(0) == 10);
    CHECK(numbers.get(2) == 30);
    CHECK(raw.value() == 2.5);
}

namespace {
// Run in a child of any start method: `times` locked increments of a synchronized RawValue's
// view, and one locked pass over a synchronized RawArray.
void increment_synchronized(zmp::Value<long> counter, zmp::Array<int> numbers, int times) {
    for (int i = 0; i < times; ++i) {
        std::lock_guard guard(counter.get_lock());
        counter.set(counter.value() + 1);
    }
    std::lock_guard guard(numbers.get_lock());
    for (std::size_t i = 0; i < numbers.size(); ++i) numbers.set(static_cast<std::ptrdiff_t>(i), numbers.get(i) + 1);
}

// Changes a copy and an original in a child: each change must stay where it was made.
void change_copy_and_original(zmp::RawArray<int> original, zmp::RawArray<int> copy, zmp::RawValue<double> value_copy) {
    copy.set(0, 100);
    original.set(1, 200);
    value_copy.set(-1.0);
}
}  // namespace

TEST_CASE("synchronized(raw): its lock makes 4 processes' increments exact, on the raw object's own memory") {
    const auto method = GENERATE(zmp::StartMethod::fork, zmp::StartMethod::spawn);
    zmp::RawValue<long> raw(0);
    zmp::RawArray<int> raw_numbers(3);
    zmp::Value<long> counter = zmp::synchronized(raw);
    zmp::Array<int> numbers = zmp::synchronized(raw_numbers);
    CHECK(counter.has_lock());
    CHECK(&counter.get_obj() == &raw.get_obj());  // the same shared memory, not a copy
    CHECK(numbers.get_obj().data() == raw_numbers.get_obj().data());
    auto ctx = zmp::get_context(method);
    std::vector<zmp::Process> workers;
    for (int w = 0; w < 4; ++w) workers.push_back(ctx.Process(increment_synchronized, counter, numbers, 20000));
    join_all(workers);
    CHECK(counter.value() == 80000);
    CHECK(raw.value() == 80000);  // seen through the raw handle too
    CHECK(raw_numbers.slice() == std::vector<int>{4, 4, 4});
}

TEST_CASE("synchronized: a given lock is shared, a Value's own lock is replaced, bad arguments raise ValueError") {
    zmp::Value<int> guarded(1);
    zmp::RawValue<int> raw(2);
    zmp::Value<int> sharing = zmp::synchronized(raw, guarded.get_lock());
    CHECK(sharing.get_lock() == guarded.get_lock());
    {
        std::lock_guard hold(guarded.get_lock());
        // Another process cannot take it through the synchronized handle.
        CHECK(test_util::in_child([sharing] { return sharing.get_lock().acquire(false) ? 1 : 0; }) == 0);
    }
    CHECK(test_util::in_child([sharing] {
              if (!sharing.get_lock().acquire(true, 60s)) return 1;
              sharing.get_lock().release();
              return 0;
          }) == 0);
    zmp::Value<int> relocked = zmp::synchronized(guarded);
    CHECK_FALSE(relocked.get_lock() == guarded.get_lock());
    CHECK(&relocked.get_obj() == &guarded.get_obj());
    CHECK_THROWS_AS(zmp::synchronized(raw, false), zmp::ValueError);
    CHECK_THROWS_AS(zmp::synchronized(raw, zmp::ValueLock()), zmp::ValueError);
    CHECK_THROWS_AS(zmp::synchronized(zmp::RawValue<int>()), zmp::ValueError);
    CHECK_THROWS_AS(zmp::copy(zmp::RawArray<int>()), zmp::ValueError);
    // A synchronized handle travels with its lock; received as a RawValue, without it.
    const auto bytes = zmp::transport::encode(sharing);
    auto again = zmp::transport::decode_as<zmp::Value<int>>(bytes.data(), bytes.size());
    CHECK(again.get_lock() == guarded.get_lock());
    auto bare = zmp::transport::decode_as<zmp::RawValue<int>>(bytes.data(), bytes.size());
    CHECK_FALSE(bare.has_lock());
    CHECK(bare.value() == 2);
}

TEST_CASE("copy(raw): a new object with the same contents, independent of the original in every process") {
    const auto method = GENERATE(zmp::StartMethod::fork, zmp::StartMethod::spawn);
    zmp::RawArray<int> original{1, 2, 3};
    zmp::Value<double> value(0.5);
    zmp::RawArray<int> copied = zmp::copy(original);
    zmp::RawValue<double> value_copy = zmp::copy(value);  // a locked Value copies too: the copy is raw
    CHECK(copied.slice() == std::vector<int>{1, 2, 3});
    CHECK(copied.data() != original.data());
    CHECK(value_copy.value() == 0.5);
    CHECK_FALSE(value_copy.has_lock());
    auto ctx = zmp::get_context(method);
    zmp::Process child = ctx.Process(change_copy_and_original, original, copied, value_copy);
    child.start();
    child.join();
    CHECK(child.exitcode() == 0);
    CHECK(original.slice() == std::vector<int>{1, 200, 3});
    CHECK(copied.slice() == std::vector<int>{100, 2, 3});
    CHECK(value.value() == 0.5);
    CHECK(value_copy.value() == -1.0);
}
