// zmp's figures for the coordination rows: Lock uncontended and ping-pong between two processes,
// Event set -> wake-up, Barrier(2).wait. The ".broker" rows measure the same with every object's
// state in the broker (ZMP_SYNC=broker), i.e. one request per call.
#include <cstdlib>

#include "bench.hpp"
#include "zmp/process.hpp"
#include "zmp/sync.hpp"

namespace {

void use_broker_path(bool broker) {
    if (broker) ::setenv("ZMP_SYNC", "broker", 1);  // read when the first object is made
}

double lock_uncontended_ns(const bench::Options& opt, bool broker) {
    use_broker_path(broker);
    zmp::Lock lock;
    return 1e9 * bench::seconds_per_op(5, opt.n(broker ? 2000 : 2000000), [&] {
               lock.acquire();
               lock.release();
           });
}

// Times `once()` in this process while a child runs `partner(total)`, the other half of each
// iteration; returns microseconds per iteration divided by `per_iteration`.
template <class Partner, class Once>
double two_processes_us(const bench::Options& opt, bool broker, Partner partner, Once once, double per_iteration) {
    const int per_round = opt.n(broker ? 500 : 5000), warm = 20, total = warm + 5 * per_round;
    zmp::Process child([=] { partner(total); });
    child.start();
    for (int i = 0; i < warm; ++i) once();
    const double s = bench::seconds_per_op(5, per_round, once);
    child.join();
    return s * 1e6 / per_iteration;
}

// Two Locks used as binary semaphores (any process may release a Lock): each iteration hands
// control to the child and back, two hand-offs.
double lock_pingpong_us(const bench::Options& opt, bool broker) {
    use_broker_path(broker);
    zmp::Lock ping, pong;
    ping.acquire();
    pong.acquire();
    return two_processes_us(
        opt, broker,
        [=](int total) {
            for (int i = 0; i < total; ++i) {
                ping.acquire();
                pong.release();
            }
        },
        [&] {
            ping.release();
            pong.acquire();
        },
        2);
}

// Two Events: set -> the other process's wait() returns; each iteration is two wake-ups.
double event_wake_us(const bench::Options& opt, bool broker) {
    use_broker_path(broker);
    zmp::Event there, back;
    return two_processes_us(
        opt, broker,
        [=](int total) {
            for (int i = 0; i < total; ++i) {
                there.wait();
                there.clear();
                back.set();
            }
        },
        [&] {
            there.set();
            back.wait();
            back.clear();
        },
        2);
}

double barrier_wait2_us(const bench::Options& opt, bool broker) {
    use_broker_path(broker);
    zmp::Barrier barrier(2);
    return two_processes_us(
        opt, broker,
        [=](int total) {
            for (int i = 0; i < total; ++i) (void)barrier.wait();
        },
        [&] { (void)barrier.wait(); }, 1);
}

}  // namespace

ZMP_BENCH("lock.uncontended", "ns") { return lock_uncontended_ns(opt, false); }
ZMP_BENCH("lock.pingpong", "us") { return lock_pingpong_us(opt, false); }
ZMP_BENCH("event.wake", "us") { return event_wake_us(opt, false); }
ZMP_BENCH("barrier.wait2", "us") { return barrier_wait2_us(opt, false); }
ZMP_BENCH("lock.uncontended.broker", "ns") { return lock_uncontended_ns(opt, true); }
ZMP_BENCH("lock.pingpong.broker", "us") { return lock_pingpong_us(opt, true); }
ZMP_BENCH("event.wake.broker", "us") { return event_wake_us(opt, true); }
ZMP_BENCH("barrier.wait2.broker", "us") { return barrier_wait2_us(opt, true); }
