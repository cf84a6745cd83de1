// The guide's first example: start a process that greets, and wait for it.
//   Python: p = Process(target=f, args=('bob',)); p.start(); p.join()
#include <zmp/zmp.hpp>

#include <cstdio>
#include <string>

void f(const std::string& name) { std::printf("hello %s\n", name.c_str()); }

int main(int argc, char** argv) {
    zmp::init(argc, argv);
    zmp::Process p(f, std::string("bob"));
    p.start();
    p.join();
}
