// A program for zmp-status to look at from "another host": its broker serves tcp (zmp::serve) and
// its pool binds tcp (PoolOptions::bind), both with the authkey in <keyfile>. It holds a queue
// with 3 items, a Manager with a dict of 2 entries, and a pool of 2 local workers, one of them
// running a task that waits; then prints "ready <broker endpoint> <pool endpoint>" and waits
// until <stopfile> exists, lets the task finish and exits 0.
//
//   status_program <keyfile> <stopfile>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

#include "zmp/authkey.hpp"
#include "zmp/context.hpp"
#include "zmp/manager.hpp"
#include "zmp/pool.hpp"
#include "zmp/queue.hpp"
#include "zmp/remote.hpp"
#include "zmp/sync.hpp"

namespace {

int wait_for(zmp::Event go, int x) {
    go.wait();
    return x;
}

}  // namespace

int main(int argc, char** argv) {
    zmp::init(argc, argv);
    if (argc != 3) return 2;
    const zmp::Authkey key = zmp::read_authkey_file(argv[1]);
    const std::string broker = zmp::serve("tcp://*:0", zmp::ServeOptions{.authkey = key});
    zmp::Queue<int> queue;
    for (int i = 0; i < 3; ++i) queue.put(i);
    zmp::Manager manager;
    auto dict = manager.dict<std::string, int>();
    dict.set("a", 1);
    dict.set("b", 2);
    zmp::Event go;
    zmp::Pool pool(
        zmp::PoolOptions{.processes = 2, .context = zmp::StartMethod::fork, .bind = "tcp://*:0", .authkey = key});
    auto waiting = pool.apply_async(wait_for, go, 7);
    std::printf("ready %s %s\n", broker.c_str(), pool.endpoint().c_str());
    std::fflush(stdout);
    while (::access(argv[2], F_OK) != 0) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    go.set();
    return waiting.get() == 7 ? 0 : 1;
}
