// The guide's Value/Array example, made deterministic: four children each add 1 to a shared
// number and to every element of a shared array, holding the lock both share, so whatever the
// order they run in, the parent prints the same thing.
#include <zmp/zmp.hpp>

#include <cstdio>
#include <mutex>
#include <vector>

void f(zmp::Value<int> num, zmp::Array<int> arr) {
    std::lock_guard guard(num.get_lock());  // arr was made with num's lock: this guards both
    num.set(num.value() + 1);
    for (int& x : arr) x += 1;
}

int main(int argc, char** argv) {
    zmp::init(argc, argv);
    zmp::Value<int> num(0);                                // Value('i', 0)
    zmp::Array<int> arr({0, 1, 2, 3, 4}, num.get_lock());  // Array('i', range(5), lock=num.get_lock())

    std::vector<zmp::Process> workers;
    for (int i = 0; i < 4; ++i) workers.emplace_back(f, num, arr);
    for (auto& p : workers) p.start();
    for (auto& p : workers) p.join();

    std::printf("Shared Value: %d\n", num.value());
    const std::vector<int> values = arr.slice();  // arr[:]
    std::printf("Shared Array: [");
    for (std::size_t i = 0; i < values.size(); ++i) std::printf("%s%d", i == 0 ? "" : ", ", values[i]);
    std::printf("]\n");
}
