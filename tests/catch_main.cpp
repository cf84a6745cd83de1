// The tests' main: zmp::init() first, as in every zmp program (spawn and forkserver children of
// a test binary run its main again and are taken over there), then Catch2.
#define CATCH_CONFIG_RUNNER
#define CATCH_CONFIG_NO_POSIX_SIGNALS  // children inherit handlers; a SIGTERMed child must just die
#include <catch2/catch.hpp>

#include "zmp/context.hpp"

int main(int argc, char** argv) {
    zmp::init(argc, argv);
    return Catch::Session().run(argc, argv);
}
