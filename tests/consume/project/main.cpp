#include <zmp/zmp.hpp>

#include <cstdio>

int main(int argc, char** argv) {
    zmp::init(argc, argv);
    auto [reader, writer] = zmp::Pipe(false);
    zmp::Process child([w = writer]() mutable { w.send(6 * 7); });
    child.start();
    writer.close();
    int answer = reader.recv<int>();
    child.join();
    std::printf("consumer ok: %d (exit code %d)\n", answer, child.exitcode().value_or(-1));
    return child.exitcode() == 0 ? 0 : 1;
}
