#pragma once
// Descriptors private to this process's own machinery (a pool dispatcher's end of a worker link):
// a forked child closes them at once, so that no copy keeps the link from reaching end of stream.

#include <utility>

#include "zmp/transport/fd_channel.hpp"

namespace zmp::detail {

/// A connected pair of channels whose first end is private to this process. Made and registered
/// atomically with respect to fork(). Call forget_private_fd() before closing that end.
std::pair<transport::FdChannel, transport::FdChannel> private_channel_pair();
void forget_private_fd(int fd);

}  // namespace zmp::detail
