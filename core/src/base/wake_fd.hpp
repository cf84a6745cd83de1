#pragma once
// The eventfd wake-up (zmp/transport/wake_fd.hpp: its contract and its one implementation), by
// the name core's components use.
//
//     WakeFd wake;                          // the loop polls wake.fd() beside its sockets
//     wake.notify();                        // any thread: the loop comes round

#include "zmp/transport/wake_fd.hpp"

namespace zmp::detail {

using transport::WakeFd;

}  // namespace zmp::detail
