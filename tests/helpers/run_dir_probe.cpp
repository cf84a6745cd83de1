// Prints this root's run directory and its permission bits, then exits normally, or, with
// "--kill-self", dies by SIGKILL without any chance to clean up. With "--kill-guardian" it first
// SIGKILLs the run's guardian (and waits until it has gone), so that nothing cleans up after the
// root but the next root. With "--segment NAME" it first creates the shared-memory segment NAME
// and records it with the runtime, as zmp's shared memory does, and leaves it for the runtime to
// clean up. With RUN_DIR_PROBE_LOG=<file> in its environment, main() appends "main <pid>" there.
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "../run_leftovers.hpp"
#include "runtime/run_directory.hpp"
#include "zmp/context.hpp"

int main(int argc, char** argv) {
    zmp::init(argc, argv);
    // With RUN_DIR_PROBE_LOG set, each run of main() says so there (a guardian must never run it).
    if (const char* log = std::getenv("RUN_DIR_PROBE_LOG")) {
        if (FILE* out = std::fopen(log, "a")) {
            std::fprintf(out, "main %d\n", static_cast<int>(::getpid()));
            std::fclose(out);
        }
    }
    auto& run = zmp::detail::run_directory();
    const std::string& dir = run.path();
    bool kill_self = false, kill_guardian = false;
    for (int i = 1; i < argc; ++i) {
        if (std::strcmp(argv[i], "--kill-self") == 0) kill_self = true;
        if (std::strcmp(argv[i], "--kill-guardian") == 0) kill_guardian = true;
        if (std::strcmp(argv[i], "--segment") == 0 && i + 1 < argc) {
            const std::string name = argv[++i];
            int fd = ::shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
            if (fd < 0 || ::ftruncate(fd, 4096) != 0) return 4;
            ::close(fd);
            run.register_segment(name);
        }
    }
    struct stat info {};
    if (::stat(dir.c_str(), &info) != 0) return 3;
    std::printf("%s %o\n", dir.c_str(), static_cast<unsigned>(info.st_mode & 07777));
    std::fflush(stdout);
    if (kill_guardian && !run_leftovers::kill_guardian(dir)) return 5;
    if (kill_self) ::raise(SIGKILL);
    return 0;
}
