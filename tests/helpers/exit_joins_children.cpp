// Starts a non-daemon child that writes a file 0.3 s later, then returns from main at once.
// zmp must join the child before this process exits (Python's _exit_function).
#include <fstream>
#include <string>
#include <thread>

#include "zmp/context.hpp"
#include "zmp/process.hpp"

int main(int argc, char** argv) {
    zmp::init(argc, argv);
    if (argc != 2) return 2;
    const std::string path = argv[1];
    zmp::Process child([path] {
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
        std::ofstream(path) << "child finished\n";
    });
    child.start();
    return 0;
}
