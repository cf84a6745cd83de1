// The guide's connection.wait example: four children each send ten messages through a Pipe and
// close it; the parent waits on all the readers at once and prints what comes, until every
// reader has reached EOF.
#include <zmp/zmp.hpp>

#include <algorithm>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

using Message = std::pair<int, std::string>;

void foo(zmp::Connection w) {
    for (int i = 0; i < 10; ++i) w.send(Message{i, zmp::current_process().name()});
    w.close();
}

int main(int argc, char** argv) {
    zmp::init(argc, argv);
    std::vector<zmp::Connection> readers;
    std::vector<zmp::Process> processes;
    for (int i = 0; i < 4; ++i) {
        auto [r, w] = zmp::Pipe(false);
        readers.push_back(r);
        zmp::Process p(foo, w);
        p.start();
        // Close the writable end here, so that p holds the only handle for it: when p closes it,
        // wait() reports the readable end as ready at once (EOF).
        w.close();
        processes.push_back(std::move(p));
    }
    while (!readers.empty()) {
        for (zmp::Connection r : zmp::wait(readers)) {
            try {
                auto [i, name] = r.recv<Message>();
                std::printf("(%d, '%s')\n", i, name.c_str());
            } catch (const zmp::EOFError&) {
                readers.erase(std::find(readers.begin(), readers.end(), r));
            }
        }
    }
    for (auto& p : processes) p.join();
}
