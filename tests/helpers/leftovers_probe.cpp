// A root that makes one of everything that has a name outside the process — a Queue holding an
// item, a Value, an Array, sync objects, a ShareableList, a SharedMemory block — and a child that
// uses them, then ends as its mode says:
//
//     leftovers_probe exit         returns from main normally
//     leftovers_probe kill-self    SIGKILLs itself: nothing of its exit path runs
//     leftovers_probe kill-all     SIGKILLs its guardian first (and waits until it is gone), then
//                                  itself: nothing of the run cleans up after it
//
// It prints "dir <run directory>", "guardian <pid>", then "shm <name>" for each block with a name of
// its own (the others start with "zmp-<pid>-"), then "ready". Handles are never destroyed: only the
// run's record can remove their segments.
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>

#include <zmp/zmp.hpp>

#include "../run_leftovers.hpp"
#include "runtime/run_directory.hpp"
#include "zmp/context.hpp"

namespace {

struct Kept {
    zmp::Queue<int> queue;
    zmp::Value<long> value{0};
    zmp::Array<double> array{1000};
    zmp::Lock lock;
    zmp::Event event;
    zmp::Semaphore semaphore{2};
    zmp::Condition condition;
    zmp::ShareableList list{std::vector<zmp::ShareableValue>{1, "two", 3.0}};
    zmp::SharedMemory block{std::nullopt, true, 4096};
};
// Never destroyed; reachable from a global, so not a leak to LeakSanitizer.
Kept* kept = nullptr;

}  // namespace

int main(int argc, char** argv) {
    zmp::init(argc, argv);
    if (argc != 2) return 2;
    const std::string mode = argv[1];
    const std::string dir = zmp::detail::run_directory().path();
    kept = new Kept();
    kept->queue.put(1);
    zmp::Process child([] {
        std::lock_guard hold(kept->lock);
        kept->value.set(kept->value.value() + 1);
        kept->array.set(0, 1.5);
        kept->event.set();
        kept->queue.put(2);
    });
    child.start();
    child.join();
    if (child.exitcode() != 0 || !kept->event.is_set()) return 3;

    const auto guardian = run_leftovers::wait_for_guardian_of(dir);
    if (!guardian) return 4;
    std::printf("dir %s\nguardian %d\nshm %s\nshm %s\nready\n", dir.c_str(), static_cast<int>(*guardian),
                kept->list.name().c_str(), kept->block.name().c_str());
    std::fflush(stdout);
    if (mode == "kill-all" && !run_leftovers::kill_guardian(dir)) return 5;
    if (mode == "kill-self" || mode == "kill-all") ::raise(SIGKILL);
    return 0;
}
