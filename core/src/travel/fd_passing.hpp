#pragma once
// Descriptors that travel inside msgpack values. While a value is packed for a channel that can
// pass descriptors (a Pipe, the spawn hand-off), an FdCollector is installed on the thread and
// every Connection packed adds its descriptor to it; on the receiving side an FdSupply hands the
// received descriptors to the Connections being rebuilt, and closes those nobody took.

#include <cstddef>
#include <vector>

namespace zmp::detail {

class FdCollector {
public:
    FdCollector();
    ~FdCollector();
    FdCollector(const FdCollector&) = delete;
    FdCollector& operator=(const FdCollector&) = delete;

    const std::vector<int>& fds() const { return fds_; }
    /// The collector installed on this thread, or nullptr.
    static FdCollector* current();
    /// Adds `fd` (borrowed: the caller keeps it open until the message is sent); returns its index.
    std::size_t add(int fd);

private:
    std::vector<int> fds_;
    FdCollector* previous_;
};

class FdSupply {
public:
    explicit FdSupply(std::vector<int> fds);
    ~FdSupply();  // closes every descriptor not taken
    FdSupply(const FdSupply&) = delete;
    FdSupply& operator=(const FdSupply&) = delete;

    static FdSupply* current();
    /// Takes ownership of descriptor `index`; -1 if there is none or it was already taken.
    int take(std::size_t index);

private:
    std::vector<int> fds_;
    FdSupply* previous_;
};

}  // namespace zmp::detail
