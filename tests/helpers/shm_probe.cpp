// A root process that leaves shared memory behind on purpose, for the no-leak tests:
//
//     shm_probe <mode> <name> <untracked name>
//
// In every mode the root and one child make Values, Arrays and SharedMemory segments that
// nobody frees (handles leaked, never unlinked): a tracked SharedMemory `name` (the child makes
// `name`-child), a ShareableList each (a "psm_" name, printed as "shm <name>"), and an untracked
// SharedMemory `untracked name`, which must outlive the run. It prints "dir <run directory>"
// first, then, by mode:
//   exit        returns from main normally;
//   kill-child  a child that holds a Value's lock (and made segments of its own) is SIGKILLed,
//               the root checks that it can take the lock and was told, then returns;
//   kill-self   the root SIGKILLs itself: nothing of its own exit path runs;
//   kill-all    the root SIGKILLs its guardian, then itself: nothing of the run cleans up.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include <zmp/zmp.hpp>

#include "../run_leftovers.hpp"
#include "runtime/run_directory.hpp"
#include "zmp/context.hpp"

namespace {

// Handles that are never destroyed, so that only the run's record can remove their segments.
// Reachable from a global, they are not leaks to LeakSanitizer.
struct Abandoned {
    std::vector<zmp::Value<long>> values;
    std::vector<zmp::Array<double>> arrays;
    std::vector<zmp::SharedMemory> blocks;
    std::vector<zmp::ShareableList> lists;
};
Abandoned* abandoned = new Abandoned;

void leave_segments(const std::string& name) {
    abandoned->values.emplace_back(1);
    abandoned->arrays.emplace_back(1000, false);
    abandoned->blocks.emplace_back(name, true, 4096);
    abandoned->lists.emplace_back(std::vector<zmp::ShareableValue>{1, "two", 3.0});
    std::printf("shm %s\n", abandoned->lists.back().name().c_str());
    std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
    zmp::init(argc, argv);
    if (argc < 4) return 2;
    const std::string mode = argv[1], name = argv[2], untracked = argv[3];
    std::printf("dir %s\n", zmp::detail::run_directory().path().c_str());
    std::fflush(stdout);

    leave_segments(name);
    abandoned->blocks.emplace_back(
        zmp::SharedMemoryOptions{.name = untracked, .create = true, .size = 64, .track = false});

    zmp::Value<long> shared(0);
    auto [reader, writer] = zmp::Pipe(false);
    zmp::Process child([&, w = writer]() mutable {
        leave_segments(name + "-child");
        shared.get_lock().lock();
        shared.set(shared.value() + 1);
        w.send(std::string("inside"));
        if (mode == "kill-child") {
            for (;;) ::pause();
        }
        shared.get_lock().unlock();
    });
    child.start();
    writer.close();
    if (reader.recv<std::string>() != "inside") return 3;
    if (mode == "kill-child") child.kill();
    child.join();

    if (mode == "kill-child") {
        std::lock_guard guard(shared.get_lock());
        if (!shared.get_lock().owner_died() || shared.value() != 1) return 4;
    }
    if (mode == "kill-all" && !run_leftovers::kill_guardian(zmp::detail::run_directory().path())) return 5;
    if (mode == "kill-self" || mode == "kill-all") ::raise(SIGKILL);
    return 0;
}
