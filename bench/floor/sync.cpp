// The floors under the coordination rows: process-shared pthread mutex and barrier, POSIX
// semaphores and raw futex words in a shared mapping, between two forked processes.
#include <linux/futex.h>
#include <pthread.h>
#include <semaphore.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <climits>
#include <cstdint>
#include <new>

#include "bench.hpp"

namespace {

template <class T>
T* shared_new() {
    void* p = ::mmap(nullptr, sizeof(T), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    return new (p) T();
}

// Runs body() in a forked child; returns its pid.
template <class F>
pid_t fork_child(F body) {
    const pid_t pid = ::fork();
    if (pid == 0) {
        body();
        ::_exit(0);
    }
    return pid;
}

void futex_wait(std::atomic<std::uint32_t>& w, std::uint32_t expected) {
    ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&w), FUTEX_WAIT, expected, nullptr, nullptr, 0);
}
void futex_wake(std::atomic<std::uint32_t>& w) {
    ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&w), FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
}

// A flag a process waits for with a futex (what an Event is made of).
struct Flag {
    std::atomic<std::uint32_t> word{0};
    void set() {
        word.store(1);
        futex_wake(word);
    }
    void wait_and_clear() {
        while (word.load() == 0) futex_wait(word, 0);
        word.store(0);
    }
};

}  // namespace

ZMP_BENCH("lock.uncontended", "ns") {
    auto* m = shared_new<pthread_mutex_t>();
    pthread_mutexattr_t attr;
    ::pthread_mutexattr_init(&attr);
    ::pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
    ::pthread_mutex_init(m, &attr);
    return 1e9 * bench::seconds_per_op(5, opt.n(2000000), [&] {
               ::pthread_mutex_lock(m);
               ::pthread_mutex_unlock(m);
           });
}

ZMP_BENCH("lock.pingpong", "us") {
    struct Pair {
        sem_t ping, pong;
    };
    auto* s = shared_new<Pair>();
    ::sem_init(&s->ping, 1, 0);
    ::sem_init(&s->pong, 1, 0);
    const int per_round = opt.n(5000), warm = 20, total = warm + 5 * per_round;
    const pid_t pid = fork_child([&] {
        for (int i = 0; i < total; ++i) {
            ::sem_wait(&s->ping);
            ::sem_post(&s->pong);
        }
    });
    auto once = [&] {
        ::sem_post(&s->ping);
        ::sem_wait(&s->pong);
    };
    for (int i = 0; i < warm; ++i) once();
    const double sec = bench::seconds_per_op(5, per_round, once);
    ::waitpid(pid, nullptr, 0);
    return sec * 1e6 / 2;
}

ZMP_BENCH("event.wake", "us") {
    struct Pair {
        Flag there, back;
    };
    auto* f = shared_new<Pair>();
    const int per_round = opt.n(5000), warm = 20, total = warm + 5 * per_round;
    const pid_t pid = fork_child([&] {
        for (int i = 0; i < total; ++i) {
            f->there.wait_and_clear();
            f->back.set();
        }
    });
    auto once = [&] {
        f->there.set();
        f->back.wait_and_clear();
    };
    for (int i = 0; i < warm; ++i) once();
    const double sec = bench::seconds_per_op(5, per_round, once);
    ::waitpid(pid, nullptr, 0);
    return sec * 1e6 / 2;
}

ZMP_BENCH("barrier.wait2", "us") {
    auto* b = shared_new<pthread_barrier_t>();
    pthread_barrierattr_t attr;
    ::pthread_barrierattr_init(&attr);
    ::pthread_barrierattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
    ::pthread_barrier_init(b, &attr, 2);
    const int per_round = opt.n(5000), warm = 20, total = warm + 5 * per_round;
    const pid_t pid = fork_child([&] {
        for (int i = 0; i < total; ++i) ::pthread_barrier_wait(b);
    });
    for (int i = 0; i < warm; ++i) ::pthread_barrier_wait(b);
    const double sec = bench::seconds_per_op(5, per_round, [&] { ::pthread_barrier_wait(b); });
    ::waitpid(pid, nullptr, 0);
    return sec * 1e6;
}
