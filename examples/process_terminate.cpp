// The guide's terminate example: an endless task, stopped with terminate().
#include <zmp/zmp.hpp>

#include <csignal>
#include <iostream>
#include <thread>

int main(int argc, char** argv) {
    zmp::init(argc, argv);
    zmp::Process p([] { std::this_thread::sleep_for(std::chrono::seconds(1000)); });
    std::cout << p << ' ' << std::boolalpha << p.is_alive() << '\n';
    p.start();
    std::cout << p << ' ' << p.is_alive() << '\n';
    p.terminate();
    p.join();
    std::cout << p << ' ' << p.is_alive() << '\n';
    std::cout << (p.exitcode() == -SIGTERM) << '\n';
}
