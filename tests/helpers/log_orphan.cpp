// A root that is SIGKILLed while its child still logs. The child logs one record while the root
// is alive, waits until the root is gone, then logs three more: they must go to its own stderr
// after a one-line note, and the child must exit (no hang). Run with stderr on the same pipe as
// stdout; the pipe reaches end of stream once the child has exited.
#include <signal.h>

#include <chrono>
#include <string>
#include <thread>

#include "zmp/context.hpp"
#include "zmp/logging.hpp"
#include "zmp/pipe.hpp"
#include "zmp/process.hpp"

int main(int argc, char** argv) {
    zmp::init(argc, argv);
    zmp::log_to_stderr(zmp::LogLevel::info);
    auto [reader, writer] = zmp::Pipe(false);
    zmp::Process child([w = writer]() mutable {
        zmp::get_logger().info("before the root died");
        zmp::get_logger().flush();  // at the root's queue
        w.send(std::string("logged"));
        zmp::parent_process()->join();  // returns once the root is gone
        // The root is looked at no more than every 10 ms: make sure the next record looks.
        std::this_thread::sleep_for(std::chrono::milliseconds(30));
        for (int i = 0; i < 3; ++i) zmp::get_logger().info("after the root died {}", i);
    });
    child.start();
    writer.close();
    (void)reader.recv<std::string>();
    zmp::get_logger().flush();  // the child's first record is written
    ::raise(SIGKILL);
}
