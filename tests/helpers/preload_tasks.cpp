// A shared library that the test binary does not contain: set_forkserver_preload loads it into the
// fork server. Plain C++, no zmp: what it proves is that its code is in every forkserver child.
#include <fstream>
#include <string>

extern "C" void zmp_test_preload_write(std::string path, int value) { std::ofstream(path) << value * 2; }
