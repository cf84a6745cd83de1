// The guide's first Pool example: with Pool(5) as p: print(p.map(f, [1, 2, 3]))
#include <zmp/zmp.hpp>

#include <cstdio>
#include <vector>

int f(int x) { return x * x; }

int main(int argc, char** argv) {
    zmp::init(argc, argv);
    zmp::Pool p(5);
    std::vector<int> squares = p.map(f, std::vector<int>{1, 2, 3});
    std::printf("[%d, %d, %d]\n", squares[0], squares[1], squares[2]);
}
