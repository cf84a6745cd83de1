// What happens when zmp::init() is missing.
//   init_check <log> child-skips <method>   main calls zmp::init() in the first process only;
//                                           the spawn / forkserver child it starts does not
//   init_check <log> parent-skips <method>  main never calls zmp::init()
// Every run of main() appends a line to <log>, so the test can count them (no fork bomb).
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>

#include "zmp/context.hpp"

void target() { std::puts("the target ran"); }

int main(int argc, char** argv) {
    if (argc != 4) return 2;
    std::ofstream(argv[1], std::ios::app) << "main ran\n";
    const bool child_skips = std::strcmp(argv[2], "child-skips") == 0;
    if (child_skips && std::getenv("ZMP_TEST_INIT_DONE") == nullptr) {
        ::setenv("ZMP_TEST_INIT_DONE", "1", 1);  // children see it and skip zmp::init()
        zmp::init(argc, argv);
    }
    try {
        zmp::Process p = zmp::get_context(argv[3]).Process(target);
        p.start();
        p.join();
        std::printf("started, exit code %d\n", p.exitcode().value_or(-1000));
        return 0;
    } catch (const zmp::ProcessError& e) {
        std::printf("error: %s\n", e.what());
        return 3;
    }
}
