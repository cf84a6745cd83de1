// A daemon process is terminated when its parent exits; a non-daemon one is waited for.
#include <zmp/zmp.hpp>

#include <cstdio>
#include <thread>

int main(int argc, char** argv) {
    zmp::init(argc, argv);
    zmp::Process daemon({.name = "daemon", .daemon = true}, [] {
        std::printf("daemon: started, sleeping for ever\n");
        std::fflush(stdout);
        std::this_thread::sleep_for(std::chrono::hours(1));
        std::printf("daemon: never printed\n");
    });
    zmp::Process worker({.name = "worker"}, [] {
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        std::printf("worker: done\n");
    });
    daemon.start();
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    worker.start();
    std::printf("main: returning; zmp joins the worker and terminates the daemon\n");
    std::fflush(stdout);
}
