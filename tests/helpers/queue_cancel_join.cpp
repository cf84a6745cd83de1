// A root whose broker the test stops (SIGSTOP on this process stops its broker thread), with two
// producer children: "cancel" calls cancel_join_thread() after its puts, "keep" does not. Each
// child warms its feeder (one item, acknowledged), says so, then waits for SIGUSR1 from the test
// before it puts 100 more and returns. Lines on stdout:
//   "pids <cancel> <keep>"                 once both feeders are warm
//   "exits <cancel code> <keep code>"      after the test let the broker go again
//   "keep <n in order>" "cancel <n> <prefix|not a prefix>"
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <vector>

#include "zmp/context.hpp"
#include "zmp/errors.hpp"
#include "zmp/process.hpp"
#include "zmp/queue.hpp"

namespace {

constexpr int kItems = 100;

void produce(zmp::Queue<int> queue, int base, bool cancel) {
    queue.put(base);
    queue.join_thread();  // the feeder is connected, and the broker has that one
    sigset_t go;
    sigemptyset(&go);
    sigaddset(&go, SIGUSR1);
    int signal = 0;
    sigwait(&go, &signal);
    for (int i = 1; i <= kItems; ++i) queue.put(base + i);
    if (cancel) queue.cancel_join_thread();
}

}  // namespace

int main(int argc, char** argv) {
    // Blocked in every thread of every process from here on: the children take it with sigwait.
    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &usr1, nullptr);
    zmp::init(argc, argv);

    zmp::Queue<int> queue;
    zmp::Process cancel(produce, queue, 1000, true);
    zmp::Process keep(produce, queue, 2000, false);
    cancel.start();
    keep.start();
    std::vector<int> got;
    got.push_back(queue.get(std::chrono::seconds(60)));
    got.push_back(queue.get(std::chrono::seconds(60)));
    std::printf("pids %d %d\n", static_cast<int>(*cancel.pid()), static_cast<int>(*keep.pid()));
    std::fflush(stdout);

    cancel.join();
    keep.join();
    std::printf("exits %d %d\n", cancel.exitcode().value_or(-1000), keep.exitcode().value_or(-1000));
    std::vector<int> kept, cancelled;
    for (;;) {
        try {
            const int v = queue.get(std::chrono::seconds(2));
            (v >= 2000 ? kept : cancelled).push_back(v);
        } catch (const zmp::Empty&) {
            break;
        }
    }
    std::size_t in_order = 0;
    while (in_order < kept.size() && kept[in_order] == 2001 + static_cast<int>(in_order)) ++in_order;
    std::printf("keep %zu of %zu in order\n", in_order, kept.size());
    bool prefix = true;
    for (std::size_t i = 0; i < cancelled.size(); ++i) prefix = prefix && cancelled[i] == 1001 + static_cast<int>(i);
    std::printf("cancel %zu %s\n", cancelled.size(), prefix ? "prefix" : "not a prefix");
    std::fflush(stdout);
    return 0;
}
