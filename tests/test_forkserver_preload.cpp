// set_forkserver_preload: the fork server loads the libraries it is given before it forks, so a
// target that lives in one of them runs in every forkserver child; a library that cannot be loaded
// is reported by the start() that needed the server. A binary of its own: each case restarts the
// run's fork server.
#include <catch2/catch.hpp>

#include <dlfcn.h>
#include <signal.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "process/forkserver.hpp"
#include "run_leftovers.hpp"
#include "lab_files.hpp"
#include "test_util.hpp"
#include "zmp/context.hpp"
#include "zmp/errors.hpp"
#include "zmp/process.hpp"

using namespace std::chrono_literals;
using Catch::Matchers::Contains;

namespace {

using WriteFn = void (*)(std::string, int);

std::string read_file(const std::string& path) {
    std::ifstream in(path);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Ends the running fork server, if any: the next forkserver start() starts a new one, which
// loads the libraries preloaded by then.
void end_forkserver() {
    const auto server = zmp::detail::forkserver_pid();
    if (!server) return;
    REQUIRE(::kill(*server, SIGKILL) == 0);
    REQUIRE(run_leftovers::eventually(
        [&] {
            const char state = test_util::process_state(*server);
            return state == 'Z' || state == '\0';
        },
        60s));
}

}  // namespace

TEST_CASE("set_forkserver_preload: a target in a preloaded library runs in every forkserver child, and only then") {
    void* library = ::dlopen(ZMP_PRELOAD_LIB, RTLD_NOW | RTLD_GLOBAL);
    REQUIRE(library != nullptr);
    auto write = reinterpret_cast<WriteFn>(::dlsym(library, "zmp_test_preload_write"));
    REQUIRE(write != nullptr);
    test_util::ScratchDir dir{"zmp-test-preload"};
    auto ctx = zmp::get_context("forkserver");

    // A fork server that has not loaded the library: its child cannot find the target.
    zmp::set_forkserver_preload({});
    end_forkserver();
    zmp::Process without = ctx.Process(write, dir.dir + "/without", 1);
    without.start();
    without.join();
    CHECK(without.exitcode() == 70);
    CHECK_FALSE(std::filesystem::exists(dir.dir + "/without"));

    // One that has: every child it forks runs the library's code.
    zmp::set_forkserver_preload({ZMP_PRELOAD_LIB});
    end_forkserver();
    for (int i = 0; i < 3; ++i) {
        const std::string path = dir.dir + "/with-" + std::to_string(i);
        zmp::Process child = ctx.Process(write, path, 10 + i);
        child.start();
        child.join();
        CHECK(child.exitcode() == 0);
        CHECK(read_file(path) == std::to_string(2 * (10 + i)));
    }
    // A running server keeps what it has: a new list applies to the next server.
    zmp::set_forkserver_preload({});
    zmp::Process still = ctx.Process(write, dir.dir + "/still", 5);
    still.start();
    still.join();
    CHECK(still.exitcode() == 0);
    CHECK(read_file(dir.dir + "/still") == "10");
    end_forkserver();
}

TEST_CASE("set_forkserver_preload: a library that cannot be loaded is named by the start() that needed the server") {
    CHECK_THROWS_AS(zmp::set_forkserver_preload({""}), zmp::ValueError);
    zmp::set_forkserver_preload({"/nonexistent/libzmp-nothing.so"});
    end_forkserver();
    auto ctx = zmp::get_context("forkserver");
    zmp::Process bad = ctx.Process([] {});
    CHECK_THROWS_WITH(bad.start(), Contains("cannot preload /nonexistent/libzmp-nothing.so"));
    // Fixed, the next start() starts a server that works.
    zmp::set_forkserver_preload({});
    zmp::Process good = ctx.Process([] {});
    good.start();
    good.join();
    CHECK(good.exitcode() == 0);
}
