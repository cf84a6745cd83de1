// A user's own worker program: the tasks of join_tasks.hpp linked in, zmp::worker_main() as its
// main. A different build from the tests that launch it, so tasks reach it by registered name.
#include "join_tasks.hpp"
#include "zmp/worker.hpp"

int main(int argc, char** argv) { return zmp::worker_main(argc, argv); }
