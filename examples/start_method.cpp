// The guide's start-method example: choose spawn once, at the start of main, then start and join.
//   Python: mp.set_start_method('spawn'); q = mp.Queue(); p = mp.Process(target=foo, args=(q,)) ...
#include <zmp/zmp.hpp>

#include <cstdio>
#include <string>

void foo(zmp::Connection out) { out.send(std::string("hello")); }

int main(int argc, char** argv) {
    zmp::init(argc, argv);  // a spawned child runs foo() here and never returns
    zmp::set_start_method(zmp::StartMethod::spawn);
    auto [reader, writer] = zmp::Pipe(false);
    zmp::Process p(foo, writer);
    p.start();
    std::printf("%s\n", reader.recv<std::string>().c_str());
    p.join();

    // A context picks a method for some processes only, leaving the default alone.
    auto ctx = zmp::get_context("forkserver");
    zmp::Process q = ctx.Process(foo, writer);
    q.start();
    std::printf("%s from the fork server's child\n", reader.recv<std::string>().c_str());
    q.join();
}
