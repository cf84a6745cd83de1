#include "shm/segment.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "runtime/run_directory.hpp"
#include "zmp/errors.hpp"

namespace zmp::detail {
namespace {

// The name as Python shows it: quoted, without the leading '/'. (Built by append: GCC 12 warns
// falsely, -Wrestrict, on "'" + std::string&&.)
std::string shown(const std::string& name) {
    std::string text = "'";
    text.append(name, 1).push_back('\'');
    return text;
}

MappedSegment map_fd(int fd, std::size_t size, const std::string& name) {
    void* base = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    const int error = errno;
    ::close(fd);
    if (base == MAP_FAILED) throw_os_error("cannot map shared memory " + shown(name), error);
    return {static_cast<std::byte*>(base), size};
}

}  // namespace

std::string posix_segment_name(const std::string& name) {
    std::string posix = name.starts_with('/') ? name : "/" + name;
    if (posix.size() < 2 || posix.find('/', 1) != std::string::npos) {
        throw ValueError("invalid shared memory name '" + name + "'");
    }
    return posix;
}

std::string random_hex(std::size_t bytes) {
    std::string raw(bytes, '\0');
    std::size_t filled = 0;
    while (filled < bytes) {
        ssize_t n = ::getrandom(raw.data() + filled, bytes - filled, 0);
        if (n > 0)
            filled += static_cast<std::size_t>(n);
        else if (errno != EINTR)
            throw_os_error("getrandom", errno);
    }
    static constexpr char digits[] = "0123456789abcdef";
    std::string hex;
    hex.reserve(2 * bytes);
    for (char c : raw) {
        const auto b = static_cast<unsigned char>(c);
        hex += digits[b >> 4];
        hex += digits[b & 15];
    }
    return hex;
}

MappedSegment create_segment(const std::string& name, std::size_t size, RecordSegment record) {
    RunDirectory& run = run_directory();
    if (record == RecordSegment::before_create) run.register_segment(name);
    int fd = ::shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0) {
        const int error = errno;
        if (record == RecordSegment::before_create) run.unregister_segment(name);
        if (error == EEXIST) throw FileExistsError("shared memory " + shown(name) + " already exists");
        throw_os_error("cannot create shared memory " + shown(name), error);
    }
    auto undo = [&](const std::string& what, int error) {
        ::close(fd);
        ::shm_unlink(name.c_str());
        if (record != RecordSegment::no) run.unregister_segment(name);
        throw_os_error(what + " " + shown(name), error);
    };
    if (record == RecordSegment::after_create) {
        try {
            run.register_segment(name);
        } catch (const OSError& e) {
            undo("cannot record shared memory", e.code());
        }
    }
    if (::ftruncate(fd, static_cast<off_t>(size)) != 0) undo("cannot size shared memory", errno);
    void* base = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED) undo("cannot map shared memory", errno);
    ::close(fd);
    return {static_cast<std::byte*>(base), size};
}

MappedSegment attach_segment(const std::string& name) {
    int fd = ::shm_open(name.c_str(), O_RDWR | O_CLOEXEC, 0);
    if (fd < 0) {
        if (errno == ENOENT) throw FileNotFoundError("no shared memory named " + shown(name));
        throw_os_error("cannot open shared memory " + shown(name), errno);
    }
    struct stat info {};
    if (::fstat(fd, &info) != 0) {
        const int error = errno;
        ::close(fd);
        throw_os_error("cannot stat shared memory " + shown(name), error);
    }
    if (info.st_size <= 0) {
        ::close(fd);
        throw ValueError("shared memory " + shown(name) + " is empty and cannot be mapped");
    }
    return map_fd(fd, static_cast<std::size_t>(info.st_size), name);
}

void unlink_segment(const std::string& name) {
    if (::shm_unlink(name.c_str()) != 0) {
        if (errno == ENOENT) throw FileNotFoundError("no shared memory named " + shown(name));
        throw_os_error("cannot unlink shared memory " + shown(name), errno);
    }
    run_directory().unregister_segment(name);
}

void unmap_segment(MappedSegment& mapping) noexcept {
    if (mapping.base != nullptr) ::munmap(mapping.base, mapping.size);
    mapping = {};
}

}  // namespace zmp::detail
