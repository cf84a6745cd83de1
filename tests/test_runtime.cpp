// The per-process runtime: run directory, authkey, ZeroMQ after fork.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <sstream>

#include "base/fork.hpp"
#include "runtime/runtime.hpp"
#include "test_util.hpp"
#include "zmp/pipe.hpp"
#include "zmp/process.hpp"
#include "zmp/transport/zsocket.hpp"

using namespace std::chrono_literals;
using zmp::detail::Runtime;

namespace {
std::pair<std::string, std::string> probe(const std::string& args = "") {
    auto result = test_util::run_command(std::string(HELPER_run_dir_probe) + " " + args);
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

TEST_CASE("a run directory left by a SIGKILLed root is removed by the next root") {
    auto [stale, mode] = probe("--kill-self");
    REQUIRE_FALSE(stale.empty());
    REQUIRE(std::filesystem::exists(stale));  // nobody cleaned up after the kill
    auto [fresh, fresh_mode] = probe();
    CHECK(fresh != stale);
    CHECK_FALSE(std::filesystem::exists(stale));
}

TEST_CASE("the authkey is 32 random bytes, made by the root and inherited by children") {
    const auto& key = Runtime::instance().authkey();
    CHECK(key.size() == 32);
    CHECK(std::any_of(key.begin(), key.end(), [](auto b) { return b != 0; }));
    auto [reader, writer] = zmp::Pipe(false);
    zmp::Process p([w = writer]() mutable {
        const auto& k = Runtime::instance().authkey();
        w.send(std::vector<std::uint8_t>(k.begin(), k.end()));
    });
    p.start();
    writer.close();
    auto child_key = reader.recv<std::vector<std::uint8_t>>();
    p.join();
    CHECK(child_key == std::vector<std::uint8_t>(key.begin(), key.end()));
}

TEST_CASE("a forked child makes its own ZeroMQ context and sockets and exits cleanly") {
    Runtime& rt = Runtime::instance();
    const std::string endpoint = zmp::transport::ipc_endpoint(rt.run_dir(), "afterfork");
    // The parent has a live context, a bound socket and a cached per-thread socket.
    zmq::socket_t server = zmp::transport::open_socket(rt.context(), zmq::socket_type::pull);
    server.bind(endpoint);
    auto make_push = [&](zmq::context_t& ctx) {
        zmq::socket_t s = zmp::transport::open_socket(ctx, zmq::socket_type::push);
        s.connect(endpoint);
        return s;
    };
    zmq::socket_ref parent_socket = rt.thread_socket("push", make_push);
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
        Runtime& crt = Runtime::instance();
        zmq::socket_ref mine = crt.thread_socket("push", make_push);
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
    CHECK(rt.thread_socket("push", make_push).handle() == parent_handle);
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

TEST_CASE("segments recorded by a killed root are unlinked by the next root") {
    const std::string name = "/zmp-test-seg-" + std::to_string(::getpid()) + "-b";
    auto [dir, mode] = probe("--kill-self --segment " + name);
    REQUIRE_FALSE(dir.empty());
    REQUIRE(segment_exists(name));  // the killed root could not clean up
    probe();
    CHECK_FALSE(segment_exists(name));
}

TEST_CASE("exit hooks run when a child exits, start hooks before each child starts") {
    auto [reader, writer] = zmp::Pipe(false);
    auto started = std::make_shared<int>(0);  // the hook outlives this test case
    Runtime::instance().add_start_hook([started] { ++*started; });
    zmp::Process p([w = writer]() mutable {
        Runtime::instance().add_exit_hook([w]() mutable { w.send(std::string("exit hook ran")); });
    });
    p.start();
    writer.close();
    CHECK(reader.recv<std::string>() == "exit hook ran");
    p.join();
    CHECK(p.exitcode() == 0);
    CHECK(*started == 1);
}
