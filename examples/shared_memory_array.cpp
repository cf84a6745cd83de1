// A large array shared between processes without copying (the guide's SharedMemory example,
// with plain doubles for NumPy): the parent fills 4 Mi doubles (32 MiB) in one SharedMemory
// block, two children attach to it by name and each doubles its half in place, and the parent
// reads the result from the same block. Only the block's name travels to the children.
#include <zmp/zmp.hpp>

#include <cstdio>
#include <numeric>
#include <span>
#include <string>
#include <vector>

constexpr std::size_t n = std::size_t{1} << 22;

std::span<double> as_doubles(const zmp::SharedMemory& shm) {
    return {reinterpret_cast<double*>(shm.buf().data()), shm.size() / sizeof(double)};
}

void double_in_place(const std::string& name, std::size_t begin, std::size_t end) {
    zmp::SharedMemory existing(name);  // SharedMemory(name=...): attach, no copy
    std::span<double> a = as_doubles(existing);
    for (std::size_t i = begin; i < end; ++i) a[i] *= 2;
    existing.close();  // this process's view only; the block stays
}

int main(int argc, char** argv) {
    zmp::init(argc, argv);
    zmp::SharedMemory shm(std::nullopt, true, n * sizeof(double));
    std::span<double> a = as_doubles(shm);
    std::iota(a.begin(), a.end(), 0.0);
    std::printf("block %s: %zu doubles (%zu MiB)\n", shm.name().c_str(), a.size(), shm.size() >> 20);
    std::printf("sum before: %.0f\n", std::accumulate(a.begin(), a.end(), 0.0));

    std::vector<zmp::Process> workers;
    workers.emplace_back(double_in_place, shm.name(), std::size_t{0}, n / 2);
    workers.emplace_back(double_in_place, shm.name(), n / 2, n);
    for (auto& p : workers) p.start();
    for (auto& p : workers) p.join();

    std::printf("sum after: %.0f\n", std::accumulate(a.begin(), a.end(), 0.0));
    std::printf("last element: %.0f\n", a.back());
    shm.close();
    shm.unlink();  // the creator destroys it
}
