// Puts on a Queue from an atexit handler of the root, after main's thread_local objects are gone
// (std::exit destroys them before it runs atexit handlers); a child gets both items and prints
// them. zmp must neither crash nor lose the item put so late.
#include <cstdio>
#include <chrono>
#include <cstdlib>

#include "zmp/context.hpp"
#include "zmp/process.hpp"
#include "zmp/queue.hpp"

namespace {
zmp::Queue<int>* queue = nullptr;  // kept alive past main, for the atexit handler
}

int main(int argc, char** argv) {
    zmp::init(argc, argv);
    queue = new zmp::Queue<int>();
    queue->put(1);  // this thread's packing buffer exists from here on
    zmp::Process child(
        [](zmp::Queue<int> q) {
            const int first = q.get(std::chrono::seconds(60));
            const int second = q.get(std::chrono::seconds(60));
            std::printf("got %d %d\n", first, second);
            std::fflush(stdout);
        },
        *queue);
    child.start();
    std::atexit([] { queue->put(7); });  // runs before zmp's own exit hooks, which join the child
    return 0;
}
