#include "runtime/startup.hpp"

#include <unistd.h>

#include <cstdlib>

#include "runtime/stdio.hpp"

namespace zmp::detail {
namespace {

// A process made by spawn or the fork server carries one of these in its environment until
// zmp::init() reads it.
bool spawned_awaiting_init = [] {
    if (std::getenv("ZMP_SPAWN_FD") == nullptr && std::getenv("ZMP_FORKSERVER_FD") == nullptr) return false;
    // If main() never calls zmp::init() and never touches zmp, end the process anyway, rather
    // than leave the parent waiting for ever: SIGALRM's default action ends it. init() disarms it.
    ::alarm(60);
    std::atexit([] {
        if (spawned_awaiting_init) die_without_init();
    });
    return true;
}();

}  // namespace

bool awaiting_init() { return spawned_awaiting_init; }

void init_called() {
    if (spawned_awaiting_init) ::alarm(0);
    spawned_awaiting_init = false;
}

void require_init() {
    if (spawned_awaiting_init) die_without_init();
}

[[noreturn]] void die_without_init() {
    flush_std_streams();
    static const char message[] =
        "zmp: this process was started by the spawn or forkserver start method, but its main() used zmp "
        "(or returned) without calling zmp::init(argc, argv) first. Make zmp::init(argc, argv) the first "
        "line of main(); the child stops here instead of running the parent's program again.\n";
    (void)!::write(2, message, sizeof message - 1);
    ::_exit(70);
}

}  // namespace zmp::detail
