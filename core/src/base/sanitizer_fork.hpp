#pragma once
// fork() under AddressSanitizer. GCC 12's ASan allocator has no fork handlers (glibc's malloc has):
// a child forked while another thread of its parent holds one of the allocator's locks inherits
// it held, and the child's first thread that allocates from that size class hangs for ever. zmp's
// background threads (the embedded broker, ZeroMQ's I/O threads) allocate while they work, so in
// ASan builds fork() first waits — for a bounded time — until every other thread of the process
// sleeps in a blocking system call. In other builds this does nothing.

namespace zmp::detail {

/// Installs the guard (once, as a pthread_atfork prepare handler); a no-op without ASan.
void install_sanitizer_fork_guard();

}  // namespace zmp::detail
