#include <zmp/zmp.hpp>

#include <atomic>
#include <cstdio>

int main(int argc, char** argv) {
    zmp::init(argc, argv);
    // Logging needs nothing more from the user's build (spdlog and {fmt} are inside zmp).
    std::atomic<int> records{0};
    zmp::CallbackHandler count([&](const zmp::LogRecord& r) { records += r.message == "child says 42" ? 1 : 0; });
    zmp::get_logger().add_handler(count);
    auto [reader, writer] = zmp::Pipe(false);
    zmp::Process child([w = writer]() mutable {
        zmp::get_logger().warning("child says {}", 6 * 7);
        w.send(6 * 7);
    });
    child.start();
    writer.close();
    int answer = reader.recv<int>();
    child.join();
    zmp::get_logger().flush();
    std::printf("consumer ok: %d (exit code %d, %d log record)\n", answer, child.exitcode().value_or(-1),
                records.load());
    return child.exitcode() == 0 && records == 1 ? 0 : 1;
}
