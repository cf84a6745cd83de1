// A program to interrupt with Ctrl-C (SIGINT to its process group), in the middle of:
//
//     interrupt_probe pool-map     a long Pool.map (two workers, thousands of slow tasks)
//     interrupt_probe queue-get    a Queue.get() that blocks for ever, with a child blocked the same way
//
// It prints "dir <run directory>" and then "ready" once it is about to block. Nothing handles
// SIGINT: the default action ends every process of the group.
#include <unistd.h>

#include <cstdio>
#include <numeric>
#include <string>
#include <vector>

#include "runtime/run_directory.hpp"
#include "zmp/context.hpp"
#include "zmp/pool.hpp"
#include "zmp/process.hpp"
#include "zmp/queue.hpp"

namespace {

int slow_square(int x) {
    ::usleep(20000);
    return x * x;
}

void announce() {
    std::printf("dir %s\nready\n", zmp::detail::run_directory().path().c_str());
    std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
    zmp::init(argc, argv);
    if (argc != 2) return 2;
    const std::string mode = argv[1];
    if (mode == "pool-map") {
        zmp::Pool pool(zmp::PoolOptions{.processes = 2});
        std::vector<int> input(100000);
        std::iota(input.begin(), input.end(), 0);
        auto result = pool.map_async(slow_square, input);
        announce();
        (void)result.get();
        return 5;  // not reached: the map takes about a quarter of an hour
    }
    if (mode == "queue-get") {
        zmp::Queue<int> queue;
        zmp::Process child([queue] { (void)queue.get(); });
        child.start();
        announce();
        (void)queue.get();
        return 5;  // not reached: nothing is ever put
    }
    return 2;
}
