// The MPI-style floor under the Pipe rows: two forked processes hand a message back and forth
// through shared memory, each copying it into a buffer and publishing a sequence number that the
// other spins on — no framing, no locks, no sleeping, no checks. (zmp's channel also streams large
// messages in chunks, so its 1 MiB figure may beat this floor, which copies in, then out.)
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <new>

#include "bench.hpp"

namespace {

void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

struct alignas(64) Slot {
    std::atomic<std::uint64_t> sequence{0};
};

double shm_rtt_us(const bench::Options& opt, std::size_t size, int per_round) {
    const std::size_t bytes = 2 * 4096 + 2 * size;
    char* base = static_cast<char*>(::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
    auto* to_child = new (base) Slot;
    auto* to_parent = new (base + 4096) Slot;
    char* down = base + 2 * 4096;  // parent -> child
    char* up = down + size;        // child -> parent
    const int total = 10 + 5 * opt.n(per_round);
    const pid_t pid = ::fork();
    if (pid == 0) {
        char* buffer = new char[size + 1];
        for (std::uint64_t i = 1; i <= static_cast<std::uint64_t>(total); ++i) {
            while (to_child->sequence.load(std::memory_order_acquire) != i) cpu_relax();
            std::memcpy(buffer, down, size);
            std::memcpy(up, buffer, size);
            to_parent->sequence.store(i, std::memory_order_release);
        }
        ::_exit(0);
    }
    char* buffer = new char[size + 1];
    std::memset(buffer, 'x', size);
    std::uint64_t i = 0;
    auto round_trip = [&] {
        ++i;
        std::memcpy(down, buffer, size);
        to_child->sequence.store(i, std::memory_order_release);
        while (to_parent->sequence.load(std::memory_order_acquire) != i) cpu_relax();
        std::memcpy(buffer, up, size);
    };
    for (int k = 0; k < 10; ++k) round_trip();
    const double s = bench::seconds_per_op(5, opt.n(per_round), round_trip);
    ::waitpid(pid, nullptr, 0);
    delete[] buffer;
    ::munmap(base, bytes);
    return s * 1e6;
}

}  // namespace

ZMP_BENCH("pipe.rtt.1B", "us") { return shm_rtt_us(opt, 1, 5000); }
ZMP_BENCH("pipe.rtt.1KiB", "us") { return shm_rtt_us(opt, 1024, 5000); }
ZMP_BENCH("pipe.rtt.1MiB", "us") { return shm_rtt_us(opt, 1 << 20, 200); }
