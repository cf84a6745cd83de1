#include "runtime/private_fds.hpp"

#include <unistd.h>

#include <algorithm>
#include <mutex>
#include <vector>

#include "runtime/process_global.hpp"

namespace zmp::detail {
namespace {

struct PrivateFds {
    std::mutex mutex;
    std::vector<int> fds;

    void after_fork_child() {
        for (int fd : fds) ::close(fd);
        fds.clear();
    }
};

}  // namespace

std::pair<transport::FdChannel, transport::FdChannel> private_channel_pair() {
    PrivateFds& mine = process_global<PrivateFds>();
    std::lock_guard lock(mine.mutex);
    auto pair = transport::FdChannel::pair();
    mine.fds.push_back(pair.first.fd());
    return pair;
}

void forget_private_fd(int fd) {
    PrivateFds& mine = process_global<PrivateFds>();
    std::lock_guard lock(mine.mutex);
    std::erase(mine.fds, fd);
}

}  // namespace zmp::detail
