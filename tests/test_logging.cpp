// Logging across real processes (zmp/logging.hpp): records of children under every start method
// and of pool workers reach the root's handlers whole and exactly once, with the right fields;
// levels filter where Python's do; file, rotating-file and callback handlers; children's captured
// stdout and stderr; a child whose root is gone; garbage on the log queue.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <set>
#include <stdexcept>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "log_collector.hpp"
#include "base/log.hpp"
#include "runtime/run.hpp"
#include "test_util.hpp"
#include "zmp/context.hpp"
#include "zmp/logging.hpp"
#include "zmp/pool.hpp"
#include "zmp/process.hpp"
#include "zmp/queue.hpp"
#include "zmp/transport/codec.hpp"

using namespace std::chrono_literals;
using zmp::LogLevel;
using zmp::LogOrigin;
using zmp::LogRecord;
using zmp::StartMethod;

namespace {

using test_util::Collector;

StartMethod any_method() { return GENERATE(StartMethod::fork, StartMethod::spawn, StartMethod::forkserver); }

std::string temp_path(const std::string& name) {
    return (std::filesystem::temp_directory_path() / ("zmp-test-" + std::to_string(::getpid()) + "-" + name)).string();
}

std::vector<std::string> read_lines(const std::string& path) {
    std::ifstream in(path);
    std::vector<std::string> lines;
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    return lines;
}

// A long body that tells which record it belongs to, so that a torn or mixed line shows.
std::string body_of(int child, int thread, int seq) {
    const char fill = static_cast<char>('a' + (child * 7 + thread * 3 + seq) % 26);
    return std::string(1500 + seq % 97, fill);
}

constexpr int kThreads = 2;

// A child's work for the untorn-records test: two threads log `per_thread` long records each.
void log_many(int child, int per_thread) {
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([=] {
            for (int i = 0; i < per_thread; ++i) {
                zmp::get_logger().info("child {} thread {} record {} {}", child, t, i, body_of(child, t, i));
            }
        });
    }
    for (auto& thread : threads) thread.join();
}

void log_each_level() {
    auto& log = zmp::get_logger();
    log.subdebug("subdebug");
    log.debug("debug");
    log.info("info");
    log.subwarning("subwarning");
    log.warning("warning");
    log.error("error");
    log.critical("critical");
}

void log_each_level_at_debug() {
    zmp::get_logger().set_level(LogLevel::debug);
    log_each_level();
}

void log_from_grandchild() { zmp::get_logger().info("from the grandchild"); }

void start_grandchild(int method) {
    zmp::get_logger().info("from the child");
    auto p = zmp::get_context(static_cast<StartMethod>(method)).Process(log_from_grandchild);
    p.start();
    p.join();
}

void capture_on_and_off() {
    zmp::capture_output();
    std::puts("first");
    zmp::capture_output(false);
    std::puts("(not captured: on the child's own stdout)");
    zmp::capture_output();
    zmp::capture_output();  // already on: nothing changes
    std::puts("second");
}

void capture_then_throw() {
    zmp::capture_output();
    std::puts("about to fail");
    throw std::runtime_error("the task failed");
}

int log_in_pool_task(int x) {
    zmp::get_logger().warning("task {}", x);
    return x * 2;
}

void print_and_log() {
    zmp::capture_output();
    std::printf("printf line\n");
    std::cout << "iostream line" << std::endl;
    std::fprintf(stderr, "stderr line\n");
    (void)!::write(1, "raw write\n", 10);
    std::printf("two\nlines\n");
    if (std::system("echo from a program it runs") != 0) std::exit(3);
    zmp::get_logger().warning("a record among the lines");
    std::printf("no newline at the end");
}

}  // namespace

TEST_CASE("records of 4 children under each start method arrive whole and exactly once") {
    const StartMethod method = any_method();
    const int per_thread = 150;
    const std::string path = temp_path("untorn.log");
    zmp::FileHandler file(path, "w");
    zmp::get_logger().add_handler(file);
    Collector collected;
    auto ctx = zmp::get_context(method);

    std::vector<zmp::Process> children;
    std::map<std::string, std::pair<int, int>> child_of_name;  // name -> (child index, pid)
    for (int c = 0; c < 4; ++c) {
        children.push_back(ctx.Process(log_many, c, per_thread));
        children.back().start();
    }
    for (int c = 0; c < 4; ++c) {
        children[c].join();
        REQUIRE(children[c].exitcode() == 0);
        child_of_name[children[c].name()] = {c, *children[c].pid()};
    }
    const auto records = collected.records();
    zmp::get_logger().remove_handler(file);  // flushes it

    // Every line of the file is one whole record in the default format, and each is there once.
    std::set<std::tuple<int, int, int>> seen;
    const auto lines = read_lines(path);
    for (const auto& line : lines) {
        char name[64] = {};
        int child = -1, thread = -1, seq = -1, consumed = 0;
        REQUIRE(std::sscanf(line.c_str(), "[INFO/%63[^]]] child %d thread %d record %d %n", name, &child, &thread, &seq,
                            &consumed) == 4);
        REQUIRE(child_of_name.count(name) == 1);
        CHECK(child_of_name[name].first == child);
        CHECK(line.substr(static_cast<std::size_t>(consumed)) == body_of(child, thread, seq));
        CHECK(seen.insert({child, thread, seq}).second);
    }
    CHECK(lines.size() == 4u * kThreads * per_thread);
    CHECK(seen.size() == 4u * kThreads * per_thread);

    // The callback saw the same records, with the sender's name and pid.
    REQUIRE(records.size() == 4u * kThreads * per_thread);
    std::map<std::tuple<int, int>, int> next_seq;  // each thread's records arrive in its order
    for (const auto& r : records) {
        int child = -1, thread = -1, seq = -1;
        REQUIRE(std::sscanf(r.message.c_str(), "child %d thread %d record %d", &child, &thread, &seq) == 3);
        REQUIRE(child_of_name.count(r.process_name) == 1);
        CHECK(child_of_name[r.process_name] == std::pair(child, r.pid));
        CHECK(r.level == LogLevel::info);
        CHECK(next_seq[{child, thread}]++ == seq);
    }
    std::filesystem::remove(path);
}

TEST_CASE("levels: quiet by default, inherited by children, filtered in the sender and by each handler") {
    const StartMethod method = any_method();
    auto ctx = zmp::get_context(method);
    zmp::get_logger().set_level(LogLevel::warning);
    {
        // The default level is warning (Python's multiprocessing logger is quiet).
        Collector collected(LogLevel::warning);
        CHECK_FALSE(zmp::get_logger().is_enabled_for(LogLevel::info));
        CHECK(zmp::get_logger().is_enabled_for(LogLevel::warning));
        auto p = ctx.Process(log_each_level);
        p.start();
        p.join();
        CHECK(collected.messages() == std::vector<std::string>{"warning", "error", "critical"});
    }
    {
        // A child takes the level its parent had when it started it.
        Collector collected(LogLevel::subdebug);
        auto p = ctx.Process(log_each_level);
        p.start();
        p.join();
        CHECK(collected.messages() ==
              std::vector<std::string>{"subdebug", "debug", "info", "subwarning", "warning", "error", "critical"});
    }
    {
        // A child's own level decides what it sends; a handler's level what that handler writes.
        Collector collected(LogLevel::error);
        Collector errors_only(LogLevel::error);
        errors_only.handler().set_level(LogLevel::error);
        auto p = ctx.Process(log_each_level_at_debug);
        p.start();
        p.join();
        CHECK(collected.messages() ==
              std::vector<std::string>{"debug", "info", "subwarning", "warning", "error", "critical"});
        CHECK(errors_only.messages() == std::vector<std::string>{"error", "critical"});
    }
}

TEST_CASE("a callback handler gets each record's time, level, process name, pid, host, thread and source") {
    Collector collected(LogLevel::info);
    const auto before = std::chrono::system_clock::now();
    zmp::Process p({.name = "worker-7"}, [] { zmp::get_logger().error("disk {} is {:.1f}% full", "sda", 93.25); });
    p.start();
    p.join();
    const auto after = std::chrono::system_clock::now();
    const auto records = collected.records();
    REQUIRE(records.size() == 1);
    const LogRecord& r = records.front();
    CHECK(r.message == "disk sda is 93.2% full");
    CHECK(r.level == LogLevel::error);
    CHECK(r.origin == LogOrigin::logger);
    CHECK(r.process_name == "worker-7");
    CHECK(r.pid == *p.pid());
    char host[256] = {};
    ::gethostname(host, sizeof host - 1);
    CHECK(r.host == host);
    CHECK(r.thread_id == static_cast<std::uint64_t>(r.pid));  // logged on the child's main thread
    CHECK(r.file.ends_with("test_logging.cpp"));
    CHECK(r.line > 0);
    CHECK(r.time >= before);
    CHECK(r.time <= after);
    CHECK(zmp::format_record(r) == "[ERROR/worker-7] disk sda is 93.2% full");
    CHECK(zmp::format_record(r, "%l|%n|%P|%N|%s:%#|%v") == "ERROR|worker-7|" + std::to_string(r.pid) + "|" + host +
                                                               "|test_logging.cpp:" + std::to_string(r.line) +
                                                               "|disk sda is 93.2% full");
}

TEST_CASE("the root's records and its children's are written by one thread, in causal order") {
    Collector collected(LogLevel::info);
    auto& log = zmp::get_logger();
    log.info("before any child");  // no child yet: written at once by this thread
    CHECK(collected.messages() == std::vector<std::string>{"before any child"});
    zmp::Process p([] {
        for (int i = 0; i < 200; ++i) zmp::get_logger().info("child {}", i);
    });
    p.start();
    p.join();
    log.info("after join");  // after every record of the child
    const auto messages = collected.messages();
    REQUIRE(messages.size() == 202);
    for (int i = 0; i < 200; ++i) CHECK(messages[1 + i] == "child " + std::to_string(i));
    CHECK(messages.back() == "after join");
}

TEST_CASE("a grandchild's records reach the root, and it takes its parent's level") {
    const StartMethod method = any_method();
    const StartMethod grandchild_method = GENERATE(StartMethod::fork, StartMethod::spawn);
    Collector collected(LogLevel::info);
    auto p = zmp::get_context(method).Process(start_grandchild, static_cast<int>(grandchild_method));
    p.start();
    p.join();
    REQUIRE(p.exitcode() == 0);
    const auto records = collected.records();
    REQUIRE(records.size() == 2);
    CHECK(records[0].message == "from the child");
    CHECK(records[0].process_name == p.name());
    CHECK(records[1].message == "from the grandchild");
    CHECK(records[1].process_name == p.name() + ":1");
}

TEST_CASE("records of pool workers reach the root") {
    const StartMethod method = any_method();
    Collector collected(LogLevel::warning);
    {
        zmp::Pool pool(zmp::PoolOptions{.processes = 2, .context = method});
        CHECK(pool.map(log_in_pool_task, std::vector<int>{1, 2, 3, 4}) == std::vector<int>{2, 4, 6, 8});
    }
    std::multiset<std::string> messages;
    for (const auto& r : collected.records()) {
        messages.insert(r.message);
        CHECK(r.pid != ::getpid());
    }
    CHECK(messages == std::multiset<std::string>{"task 1", "task 2", "task 3", "task 4"});
}

TEST_CASE("file handlers: appended or emptied, with their own format, and a rotating file keeps its backups") {
    const std::string path = temp_path("file.log");
    std::ofstream(path) << "an old line\n";
    {
        zmp::FileHandler appended(path);
        appended.set_format("%l|%n|%P|%v");
        CHECK(appended.format() == "%l|%n|%P|%v");
        zmp::get_logger().add_handler(appended);
        zmp::Process p({.name = "filer"}, [] { zmp::get_logger().warning("to the file"); });
        p.start();
        p.join();
        zmp::get_logger().flush();
        const auto lines = read_lines(path);
        CHECK(lines ==
              std::vector<std::string>{"an old line", "WARNING|filer|" + std::to_string(*p.pid()) + "|to the file"});
        zmp::get_logger().remove_handler(appended);
    }
    {
        zmp::FileHandler emptied(path, "w");
        zmp::get_logger().add_handler(emptied);
        zmp::get_logger().error("fresh");
        zmp::get_logger().remove_handler(emptied);
        CHECK(read_lines(path) == std::vector<std::string>{"[ERROR/MainProcess] fresh"});
    }
    std::filesystem::remove(path);

    CHECK_THROWS_AS(zmp::FileHandler(path, "x"), zmp::ValueError);
    CHECK_THROWS_AS(zmp::FileHandler("/proc/no-such-dir/log"), zmp::OSError);

    const std::string rotating = temp_path("rotating.log");
    std::string name;
    {
        zmp::RotatingFileHandler handler(rotating, 4000, 2);
        zmp::get_logger().add_handler(handler);
        zmp::Process p([] {
            for (int i = 0; i < 100; ++i) zmp::get_logger().warning("line {} {}", i, std::string(100, 'r'));
        });
        p.start();
        p.join();
        name = p.name();
        zmp::get_logger().remove_handler(handler);
    }
    // spdlog names backups base.1.ext, base.2.ext; each file holds whole lines, the newest last.
    const std::string stem = rotating.substr(0, rotating.size() - 4);
    std::vector<std::string> kept;
    for (const std::string& file : {stem + ".2.log", stem + ".1.log", rotating}) {
        REQUIRE(std::filesystem::exists(file));
        CHECK(std::filesystem::file_size(file) <= 4000);
        for (const auto& line : read_lines(file)) kept.push_back(line);
        std::filesystem::remove(file);
    }
    REQUIRE(kept.size() > 30);
    const std::string prefix = "[WARNING/" + name + "] line ";
    REQUIRE(kept.front().starts_with(prefix));
    const int first = std::stoi(kept.front().substr(prefix.size()));
    for (std::size_t i = 0; i < kept.size(); ++i) {
        CHECK(kept[i] == prefix + std::to_string(first + static_cast<int>(i)) + " " + std::string(100, 'r'));
    }
    CHECK(first + static_cast<int>(kept.size()) == 100);  // the newest lines are kept, the oldest rotated away
}

TEST_CASE("a captured child's stdout and stderr arrive line by line, tagged with its name") {
    const StartMethod method = GENERATE(StartMethod::fork, StartMethod::spawn);
    Collector collected(LogLevel::warning);
    auto p = zmp::get_context(method).Process(zmp::ProcessOptions{.name = "printer"}, print_and_log);
    p.start();
    p.join();
    REQUIRE(p.exitcode() == 0);
    std::vector<std::string> out, err;
    std::vector<std::string> formatted;
    for (const auto& r : collected.records()) {
        CHECK(r.process_name == "printer");
        CHECK(r.pid == *p.pid());
        if (r.origin == LogOrigin::captured_stdout) out.push_back(r.message);
        if (r.origin == LogOrigin::captured_stderr) err.push_back(r.message);
        formatted.push_back(zmp::format_record(r));
    }
    CHECK(out == std::vector<std::string>{"printf line", "iostream line", "raw write", "two", "lines",
                                          "from a program it runs", "no newline at the end"});
    CHECK(err == std::vector<std::string>{"stderr line"});
    CHECK(std::count(formatted.begin(), formatted.end(), "[stdout/printer] printf line") == 1);
    CHECK(std::count(formatted.begin(), formatted.end(), "[stderr/printer] stderr line") == 1);
    CHECK(std::count(formatted.begin(), formatted.end(), "[WARNING/printer] a record among the lines") == 1);
}

TEST_CASE("capture can be turned off and on again") {
    Collector collected(LogLevel::warning);
    zmp::Process p(capture_on_and_off);
    p.start();
    p.join();
    CHECK(p.exitcode() == 0);
    CHECK(collected.messages() == std::vector<std::string>{"first", "second"});
}

TEST_CASE("a captured child that dies of an exception: its report reaches the root as stderr lines") {
    Collector collected(LogLevel::warning);
    zmp::Process p({.name = "failing"}, capture_then_throw);
    p.start();
    p.join();
    CHECK(p.exitcode() == 1);
    std::vector<std::string> formatted;
    for (const auto& r : collected.records()) formatted.push_back(zmp::format_record(r));
    CHECK(formatted == std::vector<std::string>{"[stdout/failing] about to fail", "[stderr/failing] Process failing:",
                                                "[stderr/failing] std::runtime_error: the task failed"});
}

TEST_CASE("handlers belong to the root, and bad format strings and arguments are clear errors") {
    CHECK(test_util::in_child([] {
              try {
                  zmp::get_logger().add_handler(zmp::StreamHandler());
                  return 1;
              } catch (const zmp::ValueError&) {
              }
              try {
                  (void)zmp::get_logger().handlers();
                  return 2;
              } catch (const zmp::ValueError&) {
              }
              try {
                  zmp::capture_output(false);
              } catch (...) {
                  return 3;
              }
              return 0;
          }) == 0);
    CHECK_THROWS_AS(zmp::capture_output(), zmp::ValueError);
    Collector collected(LogLevel::warning);
    CHECK_THROWS_AS(zmp::get_logger().warning("{} and {}", 1), zmp::ValueError);
    CHECK_THROWS_AS(zmp::get_logger().warning("{:d}", "text"), zmp::ValueError);
    zmp::get_logger().warning("{braces} stay as they are without arguments");
    zmp::get_logger().warning("{1}-{0} {2:>4}|{3:<3}|{4:.2f}|{5}", "a", "b", 7, 'c', 2.0 / 3, true);
    zmp::get_logger().warning("{}", std::string_view("view"));
    CHECK(collected.messages() ==
          std::vector<std::string>{"{braces} stay as they are without arguments", "b-a    7|c  |0.67|true", "view"});
}

TEST_CASE("the handler list: a handler is added once, removed, listed, and log_to_stderr adds one stream handler") {
    auto& log = zmp::get_logger();
    const auto before = log.handlers().size();
    zmp::CallbackHandler handler([](const LogRecord&) {});
    log.add_handler(handler);
    log.add_handler(handler);
    CHECK(log.handlers().size() == before + 1);
    log.remove_handler(handler);
    CHECK(log.handlers().size() == before);
    const LogLevel level = log.level();
    CHECK(&zmp::log_to_stderr() == &log);
    zmp::log_to_stderr(LogLevel::error);
    CHECK(log.handlers().size() == before + 1);  // one stderr handler, however often it is called
    CHECK(log.level() == LogLevel::error);
    log.remove_handler(log.handlers().back());
    log.set_level(level);
    CHECK(zmp::level_name(LogLevel::subwarning) == "SUBWARNING");
    CHECK(zmp::level_name(static_cast<LogLevel>(33)) == "Level 33");
}

TEST_CASE("zmp's internal records (logging/log.hpp) go the same way, filtered by the same level") {
    Collector collected(LogLevel::warning);
    zmp::Process p([] {
        if (zmp::detail::log_enabled(LogLevel::info)) zmp::detail::log_record(LogLevel::info, "not sent");
        if (zmp::detail::log_enabled(LogLevel::warning)) zmp::detail::log_record(LogLevel::warning, "worker replaced");
    });
    p.start();
    p.join();
    const auto records = collected.records();
    REQUIRE(records.size() == 1);
    CHECK(records[0].message == "worker replaced");
    CHECK(records[0].level == LogLevel::warning);
    CHECK(records[0].pid == *p.pid());
    CHECK(records[0].file.ends_with("test_logging.cpp"));
}

TEST_CASE("garbage on the log queue is dropped and the records after it still arrive") {
    Collector collected(LogLevel::warning);
    zmp::Process first([] { zmp::get_logger().warning("first"); });
    first.start();  // the root has its log queue from here on
    first.join();
    const std::string handle = zmp::detail::this_run().service("log.queue");
    REQUIRE(!handle.empty());
    auto raw = zmp::transport::decode_as<zmp::Queue<std::string>>(handle.data(), handle.size());
    raw.put("not a log record");
    raw.join_thread();
    zmp::Process second([] { zmp::get_logger().warning("second"); });
    second.start();
    second.join();
    CHECK(collected.messages() == std::vector<std::string>{"first", "second"});
}

TEST_CASE("a child that logs after its root was SIGKILLed does not hang: its records go to its own stderr") {
    const auto result = test_util::run_command(std::string(HELPER_log_orphan) + " 2>&1");
    std::vector<std::string> lines;
    std::istringstream in(result.out);
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    INFO(result.out);
    auto position = [&](const std::string& prefix) {
        for (std::size_t i = 0; i < lines.size(); ++i)
            if (lines[i].starts_with(prefix)) return static_cast<long>(i);
        return -1L;
    };
    const long before = position("[INFO/Process-1] before the root died");
    const long note = position("zmp: the root process (pid ");
    CHECK(before >= 0);
    CHECK(note > before);
    CHECK(lines[static_cast<std::size_t>(note)].find("is gone: Process-1 (pid ") != std::string::npos);
    for (int i = 0; i < 3; ++i) CHECK(position("[INFO/Process-1] after the root died " + std::to_string(i)) > note);
}
