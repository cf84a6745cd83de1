#pragma once
// The standard streams across fork(). A forked child is a copy of its parent's memory, stdio
// buffers included: whatever the parent had written but not yet flushed would be written a second
// time when the child flushes at its exit. zmp flushes before it forks (so that the parent's
// output comes first), and its children discard what they inherited: another thread of the parent
// may write between that flush and the fork, and its output belongs to the parent alone.

namespace zmp::detail {

/// Flushes stdout and stderr (and std::cout / std::cerr when they keep buffers of their own) if
/// they hold anything; a process that has nothing to flush touches none of their pages.
void flush_std_streams();

/// In a freshly forked child, before it writes anything: drops the output stdout and stderr hold
/// unwritten, which is its parent's to write. Async-signal-safe.
void discard_inherited_stdio() noexcept;

}  // namespace zmp::detail
