#pragma once
// This process's queue feeder (queue.cpp), for code that must know its puts have landed.

namespace zmp::detail {

/// Waits until every item this process put on an unbounded queue is in the broker. A pool worker
/// calls it before it reports results: a task's puts are in their queue before its result is
/// seen, and a worker stopped right after its last result loses nothing.
void flush_queue_feeder();

}  // namespace zmp::detail
