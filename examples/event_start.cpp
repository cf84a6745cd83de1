// An Event as a starting gun: three workers wait for it, the main process fires it once.
//   Python: e = Event(); workers wait on e.wait(); e.set()
#include <zmp/zmp.hpp>

#include <cstdio>
#include <vector>

int main(int argc, char** argv) {
    zmp::init(argc, argv);
    zmp::Event go;
    zmp::Semaphore ready(0);
    std::vector<zmp::Process> workers;
    for (int i = 0; i < 3; ++i) {
        workers.emplace_back([go, ready, i] {
            ready.release();
            if (go.wait()) std::printf("worker %d saw the event\n", i);
        });
        workers.back().start();
    }
    for (int i = 0; i < 3; ++i) ready.acquire();
    std::printf("main: the workers are waiting, setting the event\n");
    std::fflush(stdout);
    go.set();
    for (auto& w : workers) w.join();
    std::printf("main: every worker saw the event (is_set: %s)\n", go.is_set() ? "true" : "false");
}
