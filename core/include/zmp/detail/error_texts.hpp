#pragma once
// Python's own messages for the errors zmp raises in its place, each written once: users who port
// code (or compare logs) see the words Python uses, and every layer that raises one — the
// transport, the broker (which sends them to clients as reply text), the shared-memory fast path —
// spells it the same way. Part of zmp's vocabulary (self-contained); not a public API.

namespace zmp::detail::texts {

/// Lock/Semaphore.release() beyond what was acquired (Python's SemLock).
inline constexpr const char* kReleasedTooManyTimes = "semaphore or lock released too many times";
/// RLock.release() by a thread that does not hold it.
inline constexpr const char* kReleaseUnacquired = "cannot release un-acquired lock";
/// Barrier.wait() on a broken barrier (threading.BrokenBarrierError).
inline constexpr const char* kBarrierBroken = "the barrier is broken";
/// Any use of a closed Connection (multiprocessing.connection's OSError).
inline constexpr const char* kHandleClosed = "handle is closed";

}  // namespace zmp::detail::texts
