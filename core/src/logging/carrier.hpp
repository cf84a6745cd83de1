#pragma once
// How a record of any process reaches the root's handlers (logging.cpp says why it is a Queue).
// The pieces that capture.cpp shares with logging.cpp.

#include <cstdint>
#include <string_view>

#include "zmp/logging.hpp"

namespace zmp::detail {

/// Sends one record of this process — already past its logger's level — to the root's handlers
/// (in the root: hands it to them). False when it can go nowhere (no link to a root, or the root
/// is gone: said once on stderr); the caller then writes it itself. Never throws.
bool deliver(LogLevel level, LogOrigin origin, std::string_view message, std::string_view file,
             std::uint32_t line) noexcept;

/// True in the run's root process (where the handlers are). False before zmp::init() in a
/// process made by spawn or the fork server.
bool in_root_process() noexcept;

/// Makes this process's queue feeder exist now, by sending a record the root ignores: an exit
/// hook registered afterwards then runs while the feeder still delivers (exit hooks run in the
/// reverse order of registration). False without a link to a root.
bool prime_link() noexcept;

/// Waits until the records this process sent are at the root.
void flush_link() noexcept;

/// True once the calling thread's thread_local objects are destroyed: at the end of a thread, and
/// on the thread that called exit() while atexit handlers run (zmp's exit hooks among them: exit()
/// destroys that thread's thread_locals first). Code of the logging component that keeps per-thread
/// buffers asks this first and uses local ones then.
bool thread_locals_gone() noexcept;

}  // namespace zmp::detail
