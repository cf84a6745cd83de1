// The floors for shared values: a plain process-shared pthread mutex around `++value`, and a
// std::atomic fetch_add, both in a MAP_SHARED page shared with a forked child.
#include <pthread.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <vector>

#include "bench.hpp"

namespace {

struct Shared {
    pthread_mutex_t mutex;
    long value;
    std::atomic<long> counter;
    std::atomic<int> go;    // rounds started by the parent
    std::atomic<int> done;  // rounds finished by the child
};

Shared* make_shared_page() {
    void* page = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    auto* s = new (page) Shared{};
    pthread_mutexattr_t attr;
    ::pthread_mutexattr_init(&attr);
    ::pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
    ::pthread_mutex_init(&s->mutex, &attr);
    return s;
}

void locked_increment(Shared* s) {
    ::pthread_mutex_lock(&s->mutex);
    ++s->value;
    ::pthread_mutex_unlock(&s->mutex);
}

// The same protocol as zmp's rows, with the rounds signalled through the page itself.
template <class Op>
double two_processes_ns(Shared* s, int per_round, Op op) {
    constexpr int rounds = 6;
    pid_t child = ::fork();
    if (child == 0) {
        for (int round = 1; round <= rounds; ++round) {
            while (s->go.load() < round) {
            }
            for (int i = 0; i < per_round; ++i) op();
            s->done.store(round);
        }
        ::_exit(0);
    }
    std::vector<double> samples;
    for (int round = 1; round <= rounds; ++round) {
        auto start = bench::Clock::now();
        s->go.store(round);
        for (int i = 0; i < per_round; ++i) op();
        while (s->done.load() < round) {
        }
        if (round > 1) samples.push_back(bench::seconds(bench::Clock::now() - start) / (2.0 * per_round));
    }
    ::waitpid(child, nullptr, 0);
    return 1e9 * bench::median(samples);
}

}  // namespace

ZMP_BENCH("value.incr.1p", "ns") {
    Shared* s = make_shared_page();
    return 1e9 * bench::seconds_per_op(5, opt.n(2000000), [s] { locked_increment(s); });
}

ZMP_BENCH("value.incr.2p", "ns") {
    Shared* s = make_shared_page();
    return two_processes_ns(s, opt.n(1000000), [s] { locked_increment(s); });
}

ZMP_BENCH("value.fetch_add", "ns") {
    Shared* s = make_shared_page();
    return 1e9 * bench::seconds_per_op(5, opt.n(5000000), [s] { s->counter.fetch_add(1); });
}

ZMP_BENCH("value.fetch_add.2p", "ns") {
    Shared* s = make_shared_page();
    return two_processes_ns(s, opt.n(2000000), [s] { s->counter.fetch_add(1); });
}
