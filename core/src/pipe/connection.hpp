#pragma once
// The pipe component's door for zmp's own protocols that run over Pipe-like links (the pool's
// workers): a Connection made from a bare socket channel, and that channel back.

#include "zmp/pipe.hpp"
#include "zmp/transport/fd_channel.hpp"

namespace zmp::detail {

/// A Connection (readable and writable) over an existing socket channel end, without a ring.
Connection connection_from_channel(transport::FdChannel channel);
/// The socket channel under such a Connection. ValueError for a Connection with a ring (a Pipe's).
transport::FdChannel& channel_of(const Connection& conn);

}  // namespace zmp::detail
