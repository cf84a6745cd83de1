#define CATCH_CONFIG_MAIN
#define CATCH_CONFIG_NO_POSIX_SIGNALS  // children inherit handlers; a SIGTERMed child must just die
#include <catch2/catch.hpp>
