// The guide's Queue example: the child puts a value on a Queue, the parent gets and prints it.
//   Python: def f(q): q.put('Hello from the child process!')
//           q = Queue(); p = Process(target=f, args=(q,)); p.start(); print(q.get()); p.join()
#include <zmp/zmp.hpp>

#include <cstdio>
#include <string>

void f(zmp::Queue<std::string> q) { q.put("Hello from the child process!"); }

int main(int argc, char** argv) {
    zmp::init(argc, argv);
    zmp::Queue<std::string> q;
    zmp::Process p(f, q);
    p.start();
    std::printf("%s\n", q.get().c_str());
    p.join();
}
