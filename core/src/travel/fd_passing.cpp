#include "travel/fd_passing.hpp"

#include <unistd.h>

#include <utility>

namespace zmp::detail {
namespace {
thread_local FdCollector* current_collector = nullptr;
thread_local FdSupply* current_supply = nullptr;
}  // namespace

FdCollector::FdCollector() : previous_(std::exchange(current_collector, this)) {}
FdCollector::~FdCollector() { current_collector = previous_; }
FdCollector* FdCollector::current() { return current_collector; }

std::size_t FdCollector::add(int fd) {
    fds_.push_back(fd);
    return fds_.size() - 1;
}

FdSupply::FdSupply(std::vector<int> fds) : fds_(std::move(fds)), previous_(std::exchange(current_supply, this)) {}

FdSupply::~FdSupply() {
    current_supply = previous_;
    for (int fd : fds_)
        if (fd >= 0) ::close(fd);
}

FdSupply* FdSupply::current() { return current_supply; }

int FdSupply::take(std::size_t index) {
    if (index >= fds_.size()) return -1;
    return std::exchange(fds_[index], -1);
}

}  // namespace zmp::detail
