// The main thread prints numbered lines on stdout while another thread keeps a pool busy with
// tasks that end their worker (zmp::exit), so that the pool's dispatcher thread forks replacement
// workers all the while. Run with stdout redirected to a file (fully buffered): every line must
// appear there exactly once, however the forks fall between the main thread's writes.
//
//     print_while_workers_replaced <replacements>
//
// Prints "lines N" on stderr at the end: the file must hold exactly "line 0" ... "line N-1".
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "zmp/context.hpp"
#include "zmp/pool.hpp"

namespace {

int end_worker(int code) { zmp::exit(code); }

}  // namespace

int main(int argc, char** argv) {
    zmp::init(argc, argv);
    const int replacements = argc > 1 ? std::atoi(argv[1]) : 50;
    zmp::Pool pool(zmp::PoolOptions{.processes = 2});
    std::atomic<int> lost{0};
    std::thread killer([&] {
        while (lost.load() < replacements) {
            try {
                pool.apply(end_worker, 3);
            } catch (const zmp::WorkerLost&) {
                lost.fetch_add(1);
            }
        }
    });
    int lines = 0;
    while (lost.load() < replacements) {
        std::printf("line %d\n", lines++);
        if (lines % 64 == 0) ::usleep(20);  // let the buffer hold a little when a fork comes
    }
    killer.join();
    pool.close();
    pool.join();
    std::fprintf(stderr, "lines %d\n", lines);
    return 0;
}
