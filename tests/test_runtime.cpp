// The per-process runtime: run directory and its guardian, authkey, ZeroMQ after fork, hooks.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "base/fork.hpp"
#include "runtime/hooks.hpp"
#include "runtime/run.hpp"
#include "runtime/run_directory.hpp"
#include "runtime/zmq_context.hpp"
#include "run_leftovers.hpp"
#include "test_util.hpp"
#include "zmp/pipe.hpp"
#include "zmp/process.hpp"
#include "zmp/transport/zsocket.hpp"

using namespace std::chrono_literals;

namespace {
// Runs the run_dir_probe helper; `env` prefixes its command line (a TMPDIR of its own).
std::pair<std::string, std::string> probe(const std::string& args = "", const std::string& env = "") {
    auto result = test_util::run_command(env + HELPER_run_dir_probe + " " + args);
    std::istringstream in(result.out);
    std::string dir, mode;
    in >> dir >> mode;
    return {dir, mode};
}
}  // namespace

TEST_CASE("the run directory is private (0700) and removed when the root exits") {
    auto [dir, mode] = probe();
    REQUIRE_FALSE(dir.empty());
    CHECK(mode == "700");
    CHECK(dir.find("/zmp-") != std::string::npos);
    CHECK_FALSE(std::filesystem::exists(dir));
}

TEST_CASE("a run directory left by a SIGKILLed root whose guardian was killed too is removed by the next root") {
    run_leftovers::PrivateRunBase base;  // the next root is ours, not another program's
    REQUIRE_FALSE(base.path.empty());
    auto [stale, mode] = probe("--kill-guardian --kill-self", base.env());
    REQUIRE_FALSE(stale.empty());
    REQUIRE(std::filesystem::exists(stale));  // nobody cleaned up after the kill
    auto [fresh, fresh_mode] = probe("", base.env());
    CHECK(fresh != stale);
    CHECK_FALSE(std::filesystem::exists(stale));
}

TEST_CASE("a root SIGKILLed the moment its run directory exists is cleaned up by its guardian all the same") {
    // The guardian may start after the root's death: its pidfd then says so, and it cleans up.
    run_leftovers::PrivateRunBase base;  // no other root sweeps it: only the guardian can clean up
    REQUIRE_FALSE(base.path.empty());
    const std::string dir = probe("--kill-self", base.env()).first;
    REQUIRE_FALSE(dir.empty());
    CHECK(run_leftovers::eventually([&] { return !std::filesystem::exists(dir); }));
    CHECK(run_leftovers::eventually([&] { return !run_leftovers::guardian_of(dir); }));
}

TEST_CASE("a guardian whose root has already gone runs none of the program's code") {
    // Roots that exit at once, removing their run directory: a guardian may start after that. It is
    // a run of the same binary, and must then end, not go on into main().
    run_leftovers::PrivateRunBase base;
    REQUIRE_FALSE(base.path.empty());
    const std::string log = base.path + "/mains";
    constexpr int kRoots = 20;
    for (int i = 0; i < kRoots; ++i) {
        auto [dir, mode] = probe("", base.env() + "RUN_DIR_PROBE_LOG=" + log + " ");
        REQUIRE_FALSE(dir.empty());
    }
    CHECK(run_leftovers::eventually([&] { return run_leftovers::guardians_under(base.path).empty(); }));
    std::ifstream in(log);
    int mains = 0;
    for (std::string line; std::getline(in, line);) ++mains;
    CHECK(mains == kRoots);
}

TEST_CASE("the authkey is 32 random bytes, made by the root and inherited by children") {
    const auto& key = zmp::detail::this_run().authkey();
    CHECK(key.size() == 32);
    CHECK(std::any_of(key.begin(), key.end(), [](auto b) { return b != 0; }));
    auto [reader, writer] = zmp::Pipe(false);
    zmp::Process p([w = writer]() mutable {
        const auto& k = zmp::detail::this_run().authkey();
        w.send(std::vector<std::uint8_t>(k.begin(), k.end()));
    });
    p.start();
    writer.close();
    auto child_key = reader.recv<std::vector<std::uint8_t>>();
    p.join();
    CHECK(child_key == std::vector<std::uint8_t>(key.begin(), key.end()));
}

TEST_CASE("a forked child makes its own ZeroMQ context and sockets and exits cleanly") {
    const std::string endpoint = zmp::transport::ipc_endpoint(zmp::detail::run_directory().path(), "afterfork");
    // The parent has a live context, a bound socket and a cached per-thread socket.
    zmq::socket_t server = zmp::transport::open_socket(zmp::detail::zmq_context(), zmq::socket_type::pull);
    server.bind(endpoint);
    auto make_push = [&](zmq::context_t& ctx) {
        zmq::socket_t s = zmp::transport::open_socket(ctx, zmq::socket_type::push);
        s.connect(endpoint);
        return s;
    };
    zmq::socket_ref parent_socket = zmp::detail::thread_socket("push", make_push);
    const void* parent_handle = parent_socket.handle();
    // Let the I/O thread finish connecting before forking: a child forked while another thread
    // allocates inherits a held allocator lock under ASan (glibc's malloc is fork-safe; GCC 12's
    // libasan allocator is not).
    std::vector<zmq::message_t> frames;
    zmp::transport::send_message(parent_socket, {zmq::const_buffer("warm", 4)});
    REQUIRE(zmp::transport::recv_message(server, frames, 1, 30s));
    const std::uint64_t parent_generation = zmp::detail::fork_generation();

    auto [done_reader, done_writer] = zmp::Pipe(false);
    zmp::Process child([&, r = done_reader]() mutable {
        zmq::socket_ref mine = zmp::detail::thread_socket("push", make_push);
        const bool fresh = mine.handle() != parent_handle && zmp::detail::fork_generation() != parent_generation;
        std::string text = fresh ? "fresh socket" : "inherited socket";
        zmp::transport::send_message(mine, {zmq::const_buffer(text.data(), text.size())});
        (void)r.recv<int>();  // ZeroMQ delivers at most once: wait until the parent has it
    });
    child.start();
    REQUIRE(zmp::transport::recv_message(server, frames, 1, 30s));
    CHECK(frames[0].to_string() == "fresh socket");
    done_writer.send(1);
    CHECK(child.join(30s));
    CHECK(child.exitcode() == 0);
    // The parent's own cached socket is untouched and still works.
    CHECK(zmp::detail::thread_socket("push", make_push).handle() == parent_handle);
    zmp::transport::send_message(parent_socket, {zmq::const_buffer("parent", 6)});
    REQUIRE(zmp::transport::recv_message(server, frames, 1, 30s));
    CHECK(frames[0].to_string() == "parent");
}

namespace {
bool segment_exists(const std::string& name) {
    int fd = ::shm_open(name.c_str(), O_RDONLY, 0);
    if (fd < 0) return false;
    ::close(fd);
    return true;
}
}  // namespace

TEST_CASE("segments recorded by a run are unlinked when its root exits") {
    const std::string name = "/zmp-test-seg-" + std::to_string(::getpid()) + "-a";
    auto [dir, mode] = probe("--segment " + name);
    REQUIRE_FALSE(dir.empty());
    CHECK_FALSE(segment_exists(name));
}

TEST_CASE("segments recorded by a killed root whose guardian was killed too are unlinked by the next root") {
    const std::string name = "/zmp-test-seg-" + std::to_string(::getpid()) + "-b";
    run_leftovers::PrivateRunBase base;  // the next root is ours, not another program's
    REQUIRE_FALSE(base.path.empty());
    auto [dir, mode] = probe("--segment " + name + " --kill-guardian --kill-self", base.env());
    REQUIRE_FALSE(dir.empty());
    REQUIRE(segment_exists(name));  // the killed root could not clean up
    probe("", base.env());
    CHECK_FALSE(segment_exists(name));
}

TEST_CASE("exit hooks run when a child exits, start hooks before each child starts") {
    auto [reader, writer] = zmp::Pipe(false);
    auto started = std::make_shared<int>(0);  // the hook outlives this test case
    zmp::detail::add_start_hook([started] { ++*started; });
    zmp::Process p([w = writer]() mutable {
        zmp::detail::add_exit_hook([w]() mutable { w.send(std::string("exit hook ran")); });
    });
    p.start();
    writer.close();
    CHECK(reader.recv<std::string>() == "exit hook ran");
    p.join();
    CHECK(p.exitcode() == 0);
    CHECK(*started == 1);
}

namespace {

// What leftovers_probe reported of its run, and how it ended.
struct Leftovers {
    std::string dir;
    pid_t guardian = 0;
    std::vector<std::string> named;  // segments with names of their own ("psm_...")
    std::string prefix;              // every other segment of the run starts with it
    int status = -1;
};

Leftovers run_leftovers_probe(const std::string& mode, const run_leftovers::PrivateRunBase& base) {
    const auto result = test_util::run_command(base.env() + HELPER_leftovers_probe + " " + mode);
    Leftovers left;
    left.status = result.status;
    std::istringstream out(result.out);
    for (std::string word; out >> word;) {
        if (word == "dir") out >> left.dir;
        if (word == "guardian") out >> left.guardian;
        if (word == "shm") {
            std::string name;
            out >> name;
            left.named.push_back(name.substr(name.find_first_not_of('/')));
        }
    }
    const std::string name = left.dir.substr(left.dir.rfind('/') + 1);  // zmp-<root pid>-XXXXXX
    left.prefix = name.substr(0, name.rfind('-') + 1);                  // zmp-<root pid>-
    return left;
}

void check_nothing_left(const Leftovers& left) {
    using run_leftovers::eventually;
    CHECK(eventually([&] { return !std::filesystem::exists(left.dir); }));
    CHECK(eventually([&] { return run_leftovers::shm_entries_starting(left.prefix).empty(); }));
    REQUIRE(left.named.size() == 2);
    for (const auto& name : left.named) CHECK(eventually([&] { return !std::filesystem::exists("/dev/shm/" + name); }));
    CHECK(eventually([&] { return !run_leftovers::running(left.guardian); }));
}

}  // namespace

TEST_CASE("a SIGKILLed root leaves nothing: its guardian removes its run directory and segments, then ends") {
    // A Queue holding items, a Value, an Array, sync objects, a ShareableList and a SharedMemory
    // block, all left to the run's record; the root is SIGKILLed, so its exit path never runs.
    run_leftovers::PrivateRunBase base;  // no other root sweeps it: only the guardian can clean up
    const Leftovers left = run_leftovers_probe("kill-self", base);
    REQUIRE(left.status != 0);
    REQUIRE_FALSE(left.dir.empty());
    REQUIRE(left.guardian > 0);
    REQUIRE(left.prefix.starts_with("zmp-"));
    check_nothing_left(left);
}

TEST_CASE("a root that exits normally leaves nothing, and its guardian ends too") {
    run_leftovers::PrivateRunBase base;
    const Leftovers left = run_leftovers_probe("exit", base);
    REQUIRE(left.status == 0);
    REQUIRE_FALSE(left.dir.empty());
    REQUIRE(left.guardian > 0);
    CHECK_FALSE(std::filesystem::exists(left.dir));  // the root removed it itself
    check_nothing_left(left);
}

TEST_CASE("the guardian runs alone: one thread, no ZeroMQ, its own session, only a pidfd on its root") {
    const std::string dir = zmp::detail::run_directory().path();
    const auto guardian = run_leftovers::wait_for_guardian_of(dir);
    REQUIRE(guardian);
    const std::string proc = "/proc/" + std::to_string(*guardian);
    CHECK(::getsid(*guardian) == *guardian);  // Ctrl-C and the root's process group do not reach it
    std::size_t threads = 0;
    for ([[maybe_unused]] const auto& task : std::filesystem::directory_iterator(proc + "/task")) ++threads;
    CHECK(threads == 1);  // no ZeroMQ context: it would have started I/O threads
    std::map<int, std::string> fds;
    for (const auto& fd : std::filesystem::directory_iterator(proc + "/fd"))
        fds[std::stoi(fd.path().filename())] = std::filesystem::read_symlink(fd.path()).string();
    CHECK(fds.size() == 4);
    CHECK(fds[0] == "/dev/null");
    CHECK(fds[1] == "/dev/null");
    CHECK(fds[2] == "/dev/null");
    CHECK(fds[3] == "anon_inode:[pidfd]");
    std::ifstream info(proc + "/fdinfo/3");
    std::string line, pid_line;
    while (std::getline(info, line))
        if (line.starts_with("Pid:")) pid_line = line;
    CHECK(pid_line == "Pid:\t" + std::to_string(::getpid()));  // it watches this process, the root
    CHECK(std::filesystem::exists(dir));                       // and leaves the directory alone while the root lives
}
