// Barrier(3): three processes work in phases; none starts a phase before all have finished the
// previous one. The last to arrive runs the action, before anyone is released.
//   Python: b = Barrier(3, action=report); def worker(b): for phase in ...: work(); b.wait()
#include <zmp/zmp.hpp>

#include <cstdio>
#include <vector>

int main(int argc, char** argv) {
    zmp::init(argc, argv);
    zmp::Semaphore phase(0);  // its value is the number of completed phases
    zmp::Barrier barrier(3, [phase] {
        std::printf("--- all 3 workers reached phase %d ---\n", phase.get_value());
        std::fflush(stdout);
        phase.release();
    });
    std::vector<zmp::Process> workers;
    for (int i = 0; i < 3; ++i) {
        workers.emplace_back([barrier, phase, i] {
            for (int p = 0; p < 2; ++p) {
                std::printf("worker %d reached phase %d\n", i, phase.get_value());
                std::fflush(stdout);
                (void)barrier.wait();
            }
        });
        workers.back().start();
    }
    for (auto& w : workers) w.join();
    std::printf("main: %d phases, broken: %s\n", phase.get_value(), barrier.broken() ? "true" : "false");
}
