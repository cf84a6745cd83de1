// Code that must not compile: a task that cannot travel to a worker process (a lambda with a
// capture), handed to each entry point of Pool and ProcessPoolExecutor. Each call must fail with
// the one clear message, never with the obscure ones a task's signature used to give ("no match
// for operator+"). check.cmake builds this file and counts what the compiler says: every case
// has its own lambda type, so each one is reported on its own.
#include <string>
#include <tuple>
#include <vector>

#include "zmp/pool.hpp"

namespace {

int captured = 1;
std::vector<int> items{1, 2};
std::vector<std::tuple<int, int>> pairs{{1, 2}};

#define ONE_ARG [c = captured](int x) { return x + c; }
#define TWO_ARGS [c = captured](int x, int y) { return x + y + c; }

void cases(zmp::Pool& pool, zmp::ProcessPoolExecutor& executor) {
    (void)pool.map(ONE_ARG, items);
    (void)pool.map(ONE_ARG, items, 2);
    (void)pool.map_async(ONE_ARG, items);
    (void)pool.map_async(zmp::callbacks([](const auto&) {}), ONE_ARG, items);
    (void)pool.starmap(TWO_ARGS, pairs);
    (void)pool.starmap_async(TWO_ARGS, pairs);
    (void)pool.starmap_async(zmp::callbacks([](const auto&) {}), TWO_ARGS, pairs);
    (void)pool.imap(ONE_ARG, items);
    (void)pool.imap_unordered(ONE_ARG, items);
    (void)pool.apply(ONE_ARG, 1);
    (void)pool.apply_async(ONE_ARG, 1);
    (void)pool.apply_async(zmp::callbacks([](int) {}), ONE_ARG, 1);
    (void)pool.submit(ONE_ARG, 1);
    (void)executor.submit(ONE_ARG, 1);
    (void)executor.map(ONE_ARG, items);
    zmp::Pool with_initializer({}, [c = captured] { (void)c; });
}

}  // namespace

int main() {
    zmp::Pool pool(1);
    zmp::ProcessPoolExecutor executor;
    cases(pool, executor);
    return 0;
}
