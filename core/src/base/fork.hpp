#pragma once
// fork() in one place. A forked child is a copy of one thread of its parent: every other thread
// is gone, the locks they held stay held, and state that belonged to the parent (its ZeroMQ
// context, its broker connections, its deliveries) must never be used by the child.
//
// Two tools, so that no component installs pthread_atfork handlers or tracks forks by itself:
//  - on_fork(): one registry of fork handlers, ordered by layer. `prepare` runs from the highest
//    layer down (a service may call into the runtime while it locks), `parent` and `child` from
//    the lowest layer up (the runtime is itself again before the services that use it). Within a
//    layer, as pthread_atfork does: prepare in reverse order of registration, parent and child in
//    order. In clang AddressSanitizer builds the last prepare step also locks the sanitizer's
//    allocator, and the first parent/child step unlocks it (fork.cpp says why).
//  - fork_generation() and ForkLocal<T>: a number bumped in every forked child before any child
//    handler runs, and per-thread state that starts afresh in a child the first time it is used.

#include <cstdint>

namespace zmp::detail {

enum class ForkLayer : int {
    runtime = 0,  // the process's runtime (its mutex, its context, its children)
    service = 1,  // everything built on the runtime: broker links, caches, the embedded broker
};

struct ForkHandlers {
    void (*prepare)() = nullptr;
    void (*parent)() = nullptr;
    void (*child)() = nullptr;
};

/// Registers handlers for every later fork() of this process (and of its forked children, which
/// inherit the registry). Safe from static initialisers and from any thread.
void on_fork(ForkLayer layer, ForkHandlers handlers);

/// 1 in a process that was never forked; bumped in each forked child before its child handlers.
std::uint64_t fork_generation() noexcept;

/// Per-thread state that a forked child starts afresh: get() returns the calling thread's value,
/// made anew (value-initialised) on the first call after each fork. A value of the parent that must
/// not be destroyed in the child (it owns the parent's sockets) is given up through its
/// `abandon()` member, when it has one, before the fresh value replaces it.
///
///     thread_local ForkLocal<ThreadConns> conns;
///     ThreadConns& mine = conns.get();
template <class T>
class ForkLocal {
public:
    T& get() {
        const std::uint64_t now = fork_generation();
        if (generation_ != now) {
            if constexpr (requires(T& t) { t.abandon(); }) value_.abandon();
            value_ = T{};
            generation_ = now;
        }
        return value_;
    }
    /// This process's value if this thread has made one, without making one.
    T* find() noexcept { return generation_ == fork_generation() ? &value_ : nullptr; }

    ForkLocal() = default;
    ForkLocal(const ForkLocal&) = delete;
    ForkLocal& operator=(const ForkLocal&) = delete;
    ~ForkLocal() {
        // A thread of a forked child that ends without using the value again.
        if constexpr (requires(T& t) { t.abandon(); })
            if (generation_ != fork_generation()) value_.abandon();
    }

private:
    std::uint64_t generation_ = 0;
    T value_{};
};

}  // namespace zmp::detail
