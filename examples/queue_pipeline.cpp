// A producer/consumer pipeline over a Queue: one producer puts the numbers 1..1000, then one
// sentinel (an empty optional, Python's None) per consumer; three consumers add up what they get
// until their sentinel and put their partial sums on a second queue; the parent adds those up.
//   Python: for x in iter(q.get, None): total += x
#include <zmp/zmp.hpp>

#include <cstdio>
#include <optional>
#include <utility>
#include <vector>

constexpr int kNumbers = 1000;
constexpr int kConsumers = 3;

void produce(zmp::Queue<std::optional<int>> numbers) {
    for (int i = 1; i <= kNumbers; ++i) numbers.put(i);
    for (int c = 0; c < kConsumers; ++c) numbers.put(std::nullopt);
}

void consume(zmp::Queue<std::optional<int>> numbers, zmp::Queue<std::pair<long, long>> sums) {
    long sum = 0, count = 0;
    while (std::optional<int> x = numbers.get()) {
        sum += *x;
        ++count;
    }
    sums.put({sum, count});
}

int main(int argc, char** argv) {
    zmp::init(argc, argv);
    zmp::Queue<std::optional<int>> numbers(100);  // bounded: the producer waits when consumers lag
    zmp::Queue<std::pair<long, long>> sums;
    std::vector<zmp::Process> processes;
    processes.emplace_back(produce, numbers);
    for (int c = 0; c < kConsumers; ++c) processes.emplace_back(consume, numbers, sums);
    for (auto& p : processes) p.start();
    long total = 0, count = 0;
    for (int c = 0; c < kConsumers; ++c) {
        auto [sum, n] = sums.get();
        total += sum;
        count += n;
    }
    for (auto& p : processes) p.join();
    std::printf("%d consumers took %ld items\n", kConsumers, count);
    std::printf("total: %ld (expected %d)\n", total, kNumbers * (kNumbers + 1) / 2);
}
