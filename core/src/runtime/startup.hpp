#pragma once
// How a process of a run starts. A process made by spawn or the fork server is a fresh run of this
// binary carrying a descriptor in its environment: it must not use zmp until zmp::init() has read
// that descriptor, or it would run its parent's program again. The pieces of the runtime ask
// require_init() when they are first made; zmp::init() calls init_called().

namespace zmp::detail {

/// True from process start-up (when this process was made by spawn or the fork server) until
/// zmp::init() runs.
bool awaiting_init();
/// zmp::init() has run: zmp may be used from here on.
void init_called();
/// Ends this process (exit code 70) with a message saying that main() must call zmp::init() first.
[[noreturn]] void die_without_init();
/// Calls die_without_init() while this process awaits zmp::init(); nothing otherwise.
void require_init();

}  // namespace zmp::detail
