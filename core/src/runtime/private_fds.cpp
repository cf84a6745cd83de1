#include "runtime/private_fds.hpp"

#include <unistd.h>

#include <algorithm>
#include <mutex>
#include <vector>

#include "base/fork.hpp"

namespace zmp::detail {
namespace {

struct PrivateFds {
    std::mutex mutex;
    std::vector<int> fds;
};

// The fork handlers use the pointer, not private_fds(), whose first call may still be under way.
PrivateFds* the_fds = nullptr;

void lock_fds() { the_fds->mutex.lock(); }
void unlock_fds() { the_fds->mutex.unlock(); }
void close_parents_fds() {
    the_fds->mutex.unlock();
    for (int fd : the_fds->fds) ::close(fd);
    the_fds->fds.clear();
}

PrivateFds& private_fds() {
    static PrivateFds* made = [] {
        the_fds = new PrivateFds();
        on_fork(ForkLayer::runtime, {lock_fds, unlock_fds, close_parents_fds});
        return the_fds;
    }();
    return *made;
}

}  // namespace

std::pair<transport::FdChannel, transport::FdChannel> private_channel_pair() {
    PrivateFds& mine = private_fds();
    std::lock_guard lock(mine.mutex);
    auto pair = transport::FdChannel::pair();
    mine.fds.push_back(pair.first.fd());
    return pair;
}

void forget_private_fd(int fd) {
    PrivateFds& mine = private_fds();
    std::lock_guard lock(mine.mutex);
    std::erase(mine.fds, fd);
}

}  // namespace zmp::detail
