// zmp-worker: the generic worker of zmp's pools on other hosts. It joins a pool bound to a tcp
// endpoint and runs the tasks of the libraries it is told to load (--load libtasks.so, whose
// ZMP_TASK registrations run when they are loaded). `zmp-worker --help` lists every flag.
#include "zmp/worker.hpp"

int main(int argc, char** argv) { return zmp::worker_main(argc, argv); }
