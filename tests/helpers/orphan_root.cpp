// A root whose grandchild blocks on one of its objects, for the test that SIGKILLs this root (and
// so its embedded broker) while the grandchild waits.
//   orphan_root <lock|event|condition|barrier|queue>
// Prints "grandchild <pid>" once the grandchild is about to block, then waits to be killed. The
// grandchild prints "raised ProcessError" when its blocked call raises ProcessError, or
// "returned" / "raised <other>" (exit 1) otherwise.
#include <unistd.h>

#include <cstdio>
#include <mutex>
#include <string>
#include <thread>

#include "zmp/context.hpp"
#include "zmp/process.hpp"
#include "zmp/queue.hpp"
#include "zmp/sync.hpp"

namespace {

template <class Block>
void blocked_grandchild(Block block) {
    zmp::Process child([block] {
        zmp::Process grandchild([block] {
            std::printf("grandchild %d\n", static_cast<int>(::getpid()));
            std::fflush(stdout);
            try {
                block();
                std::puts("returned");
            } catch (const zmp::ProcessError& e) {
                std::printf("raised ProcessError: %s\n", e.what());
                std::fflush(stdout);
                zmp::exit(0);
            } catch (const std::exception& e) {
                std::printf("raised %s\n", e.what());
            }
            std::fflush(stdout);
            zmp::exit(1);
        });
        grandchild.start();
        grandchild.join();
    });
    child.start();
    for (;;) ::pause();  // until killed
}

}  // namespace

int main(int argc, char** argv) {
    zmp::init(argc, argv);
    if (argc != 2) return 2;
    const std::string what = argv[1];
    if (what == "lock") {
        zmp::Lock lock;
        lock.acquire();  // held by this root for ever: the grandchild blocks in acquire()
        blocked_grandchild([lock] { (void)lock.acquire(); });
    } else if (what == "event") {
        zmp::Event event;
        blocked_grandchild([event] { (void)event.wait(); });
    } else if (what == "condition") {
        zmp::Condition cond;
        blocked_grandchild([cond] {
            std::unique_lock guard(cond);
            (void)cond.wait();
        });
    } else if (what == "barrier") {
        zmp::Barrier barrier(2);
        blocked_grandchild([barrier] { (void)barrier.wait(); });
    } else if (what == "queue") {
        zmp::Queue<int> queue;
        blocked_grandchild([queue] { (void)queue.get(); });
    }
    return 2;
}
