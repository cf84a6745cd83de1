// No shared-memory segment of a run outlives it: after its root exits normally, after a child
// is SIGKILLed mid-use, and after the root itself is SIGKILLed with its guardian (then the next
// root cleans up; a SIGKILLed root alone is cleaned up by its guardian: test_runtime).
// The roots here are real programs (tests/helpers/shm_probe.cpp) that leak handles on purpose.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <sstream>
#include <string>
#include <vector>

#include "run_leftovers.hpp"
#include "test_util.hpp"

namespace {

bool segment_exists(const std::string& name) {
    int fd = ::shm_open(("/" + name).c_str(), O_RDONLY, 0);
    if (fd < 0) return false;
    ::close(fd);
    return true;
}

struct Probe {
    std::string name;                 // its tracked SharedMemory (its child's is name + "-child")
    std::string untracked;            // made with track=false: must survive the run
    std::string run_prefix;           // every segment the library made for that run starts with it
    std::vector<std::string> listed;  // the "psm_" names of its ShareableLists
    int status;
};

// Removes the probe's untracked segment (which outlives runs on purpose) even if a check fails.
struct RemoveUntracked {
    std::string name;
    ~RemoveUntracked() { ::shm_unlink(("/" + name).c_str()); }
};

Probe run_probe(const std::string& mode, const std::string& env = "") {
    const std::string tag = "zmp_probe_" + std::to_string(::getpid()) + "_" + mode;
    Probe probe{tag, tag + "_untracked", "", {}, -1};
    auto result =
        test_util::run_command(env + HELPER_shm_probe + " " + mode + " " + probe.name + " " + probe.untracked);
    probe.status = result.status;
    std::istringstream out(result.out);
    std::string word, dir;
    out >> word >> dir;
    if (word == "dir" && !dir.empty()) probe.run_prefix = dir.substr(dir.rfind('/') + 1) + "-";
    std::string name;
    while (out >> word >> name) {
        if (word == "shm") probe.listed.push_back(name);
    }
    return probe;
}

void check_nothing_left(const Probe& probe) {
    CHECK(test_util::segments_starting(probe.run_prefix).empty());
    CHECK_FALSE(segment_exists(probe.name));
    CHECK_FALSE(segment_exists(probe.name + "-child"));
    CHECK(probe.listed.size() == 2);
    for (const auto& name : probe.listed) CHECK_FALSE(segment_exists(name));
    CHECK(segment_exists(probe.untracked));  // track=false: not the run's to remove
}

}  // namespace

TEST_CASE("nothing of a run is left in /dev/shm after its root exits normally") {
    Probe probe = run_probe("exit");
    RemoveUntracked cleanup{probe.untracked};
    REQUIRE(probe.status == 0);
    REQUIRE_FALSE(probe.run_prefix.empty());
    check_nothing_left(probe);
}

TEST_CASE("nothing of a run is left after a child is SIGKILLed holding a lock, and the lock recovers") {
    Probe probe = run_probe("kill-child");
    RemoveUntracked cleanup{probe.untracked};
    REQUIRE(probe.status == 0);  // 4 would mean the root was not told, or the counter was lost
    REQUIRE_FALSE(probe.run_prefix.empty());
    check_nothing_left(probe);
}

TEST_CASE("segments of a SIGKILLed root whose guardian was killed too are removed by the next root") {
    run_leftovers::PrivateRunBase base;  // the next root is ours, not another program's
    REQUIRE_FALSE(base.path.empty());
    Probe probe = run_probe("kill-all", base.env());
    RemoveUntracked cleanup{probe.untracked};
    REQUIRE_FALSE(probe.run_prefix.empty());
    REQUIRE(segment_exists(probe.name));  // nobody could clean up yet
    REQUIRE(segment_exists(probe.name + "-child"));
    REQUIRE(probe.listed.size() == 2);
    for (const auto& name : probe.listed) REQUIRE(segment_exists(name));
    REQUIRE_FALSE(test_util::segments_starting(probe.run_prefix).empty());
    auto next_root = test_util::run_command(base.env() + HELPER_run_dir_probe);
    REQUIRE(next_root.status == 0);
    check_nothing_left(probe);
}
