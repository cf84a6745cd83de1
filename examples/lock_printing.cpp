// The guide's "synchronization between processes": a Lock keeps lines whole. Ten processes,
// named after the NATO alphabet's tango, foxtrot and alpha, each write a line in several pieces;
// under the lock no line is ever cut by another.
//   Python: def f(l, i): with l: print('hello world', i)
//           lock = Lock(); for num in range(10): Process(target=f, args=(lock, num)).start()
#include <unistd.h>

#include <zmp/zmp.hpp>

#include <mutex>
#include <string>
#include <vector>

void f(const zmp::Lock& l, int i, const std::string& name) {
    std::lock_guard guard(l);
    // One write per piece: without the lock, pieces of different processes could interleave.
    for (const std::string& piece :
         {std::string("hello "), std::string("world "), std::to_string(i), " from " + name, std::string("\n")})
        (void)!::write(1, piece.data(), piece.size());
}

int main(int argc, char** argv) {
    zmp::init(argc, argv);
    const char* names[] = {"tango", "foxtrot", "alpha"};
    zmp::Lock lock;
    std::vector<zmp::Process> processes;
    for (int num = 0; num < 10; ++num) processes.emplace_back(f, lock, num, std::string(names[num % 3]));
    for (auto& p : processes) p.start();
    for (auto& p : processes) p.join();
}
