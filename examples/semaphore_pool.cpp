// Semaphore(2) over four processes: at most two hold it at once. Each holder counts itself in a
// word of shared memory (an anonymous shared mapping, made before the processes start) and
// records the most it ever saw.
//   Python: s = Semaphore(2); def worker(s): with s: work()
#include <sys/mman.h>

#include <zmp/zmp.hpp>

#include <atomic>
#include <cstdio>
#include <mutex>
#include <thread>
#include <vector>

struct Counts {
    std::atomic<int> holding{0};
    std::atomic<int> most{0};
};

int main(int argc, char** argv) {
    zmp::init(argc, argv);
    void* shared = ::mmap(nullptr, sizeof(Counts), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shared == MAP_FAILED) return 1;
    auto* counts = new (shared) Counts;
    zmp::Semaphore slots(2);
    std::vector<zmp::Process> workers;
    for (int i = 0; i < 4; ++i) {
        workers.emplace_back([slots, counts, i] {
            std::lock_guard hold(slots);
            const int now = ++counts->holding;
            int most = counts->most.load();
            while (now > most && !counts->most.compare_exchange_weak(most, now)) {
            }
            std::printf("worker %d holds a slot (%d holding)\n", i, now);
            std::fflush(stdout);
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
            --counts->holding;
        });
        workers.back().start();
    }
    for (auto& w : workers) w.join();
    const int most = counts->most.load();
    std::printf(most <= 2 ? "main: never more than 2 held it at once\n" : "main: %d held it at once\n", most);
    std::printf("main: value back to %d\n", slots.get_value());
}
