#include "runtime/leftovers.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <filesystem>

#include "zmp/errors.hpp"

namespace zmp::detail {
namespace {

// Segment names are recorded as files in <run dir>/shm; '/' cannot appear in a file name.
std::string segment_record(const std::string& dir, const std::string& name) {
    std::string file = name;
    for (char& c : file)
        if (c == '/') c = '%';
    return dir + "/shm/" + file;
}

void unlink_recorded_segments(const std::string& dir) {
    DIR* shm = ::opendir((dir + "/shm").c_str());
    if (shm == nullptr) return;
    while (dirent* entry = ::readdir(shm)) {
        std::string name = entry->d_name;
        if (name == "." || name == "..") continue;
        for (char& c : name)
            if (c == '%') c = '/';
        ::shm_unlink(name.c_str());
    }
    ::closedir(shm);
}

}  // namespace

void record_segment(const std::string& dir, const std::string& name) {
    ::mkdir((dir + "/shm").c_str(), 0700);
    int fd = ::open(segment_record(dir, name).c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    if (fd < 0) throw_os_error("cannot record shared memory segment " + name, errno);
    ::close(fd);
}

void forget_segment(const std::string& dir, const std::string& name) { ::unlink(segment_record(dir, name).c_str()); }

void remove_run(const std::string& dir) {
    unlink_recorded_segments(dir);
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
}

void remove_stale_runs(const std::string& base) {
    DIR* dir = ::opendir(base.c_str());
    if (dir == nullptr) return;
    const uid_t me = ::getuid();
    while (dirent* entry = ::readdir(dir)) {
        int pid = 0;
        if (std::sscanf(entry->d_name, "zmp-%d-", &pid) != 1 || pid <= 0) continue;
        if (::kill(pid, 0) == 0 || errno != ESRCH) continue;  // its root may still be alive
        std::string path = base + "/" + entry->d_name;
        struct stat info {};
        if (::lstat(path.c_str(), &info) != 0 || !S_ISDIR(info.st_mode) || info.st_uid != me) continue;
        remove_run(path);
    }
    ::closedir(dir);
}

}  // namespace zmp::detail
