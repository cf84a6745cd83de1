#pragma once
// The end of a process that zmp started. A child never returns into its parent's code and never
// runs its parent's atexit handlers or static destructors: it finishes its own children, runs its
// exit hooks (runtime/hooks.hpp), flushes its output and leaves with _exit(). The root ends
// through exit() instead, whose atexit handler runs the same exit hooks.

namespace zmp::detail {

/// Finishes children, runs the exit hooks, flushes stdio, closes the calling thread's sockets and
/// calls _exit(code).
[[noreturn]] void exit_child(int code);

}  // namespace zmp::detail
