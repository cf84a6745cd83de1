// Each process has its own memory: a child's change to a global is not seen by the parent.
#include <zmp/zmp.hpp>

#include <cstdio>

int counter = 0;

int main(int argc, char** argv) {
    zmp::init(argc, argv);
    zmp::Process p([] {
        counter += 1;
        std::printf("child %d\n", counter);
    });
    p.start();
    p.join();
    std::printf("main %d\n", counter);
}
