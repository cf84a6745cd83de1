// A Condition between a producer and a consumer: the consumer waits until an item is there, the
// producer adds one and notifies, under the condition's lock. The number of items waiting is the
// value of a Semaphore, which every process sees.
//   Python: with cv: cv.wait_for(an_item_is_available); take it      /  with cv: make one; cv.notify()
#include <zmp/zmp.hpp>

#include <cstdio>
#include <mutex>
#include <thread>

int main(int argc, char** argv) {
    zmp::init(argc, argv);
    zmp::Condition cv;
    zmp::Semaphore items(0);
    constexpr int kItems = 5;
    zmp::Process consumer([cv, items] {
        for (int taken = 1; taken <= kItems; ++taken) {
            std::unique_lock guard(cv);
            cv.wait_for([&] { return items.get_value() > 0; });
            items.acquire();
            std::printf("consumer: took item %d\n", taken);
            std::fflush(stdout);
        }
    });
    zmp::Process producer([cv, items] {
        for (int made = 1; made <= kItems; ++made) {
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
            std::lock_guard guard(cv);
            items.release();
            cv.notify();
        }
    });
    consumer.start();
    producer.start();
    producer.join();
    consumer.join();
    std::printf("main: %d made, %d left\n", kItems, items.get_value());
}
