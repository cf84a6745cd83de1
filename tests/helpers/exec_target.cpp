// A second zmp program, for set_executable: the tests' spawn children run here. It registers
// the names the test binary registers, with bodies of its own, so that what a child leaves behind
// tells which program ran it. Run directly with "pool", it uses a Pool itself (as a program that
// serves pools does), which also gives it the Pool's worker.
#include <cstdio>
#include <fstream>
#include <string>

#include "zmp/context.hpp"
#include "zmp/function.hpp"
#include "zmp/pool.hpp"

namespace {

void exec_write(std::string path, int value) { std::ofstream(path) << "exec_target " << value * 2; }
ZMP_REGISTER_AS("zmp_test_exec_write", exec_write);

int exec_square(int x) { return x * x + 1; }
ZMP_TASK("zmp_test_exec_square", exec_square);

}  // namespace

int main(int argc, char** argv) {
    zmp::init(argc, argv);
    if (argc > 1 && std::string(argv[1]) == "pool") {
        zmp::Pool pool(1);
        std::printf("%d\n", pool.apply(exec_square, 3));
    }
    return 0;
}
