// Command line of zmp_bench and floor_bench:  <binary> --list | <binary> <row> [--quick]
#include <cstdio>
#include <cstring>
#include <string>

#include "bench.hpp"
#ifdef ZMP_BENCH_WITH_ZMP
#include "zmp/context.hpp"
#endif

namespace bench {
std::vector<Row>& registry() {
    static std::vector<Row> rows;
    return rows;
}
}  // namespace bench

int main(int argc, char** argv) {
#ifdef ZMP_BENCH_WITH_ZMP
    zmp::init(argc, argv);
#endif
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s --list | <row> [--quick]\n", argv[0]);
        return 2;
    }
    if (std::strcmp(argv[1], "--exit-at-once") == 0) return 0;  // for the spawn floor
    if (std::strcmp(argv[1], "--list") == 0) {
        for (const auto& row : bench::registry()) std::printf("%s %s\n", row.name, row.unit);
        return 0;
    }
    bench::Options options;
    for (int i = 2; i < argc; ++i)
        if (std::strcmp(argv[i], "--quick") == 0) options.quick = true;
    for (const auto& row : bench::registry()) {
        if (row.name != std::string(argv[1])) continue;
        const double value = row.fn(options);
        std::printf("{\"name\": \"%s\", \"unit\": \"%s\", \"value\": %.6g}\n", row.name, row.unit, value);
        return 0;
    }
    std::fprintf(stderr, "no row named %s\n", argv[1]);
    return 3;
}
