#pragma once
// A process-wide object of the runtime (or of a component above it): made on first use, never
// destroyed (exit hooks may use it after static destructors have run), and guarded by a mutex that
// fork() never leaves locked. The mutex is held from the prepare step to the parent's and the
// child's handlers (base/fork.hpp: on_fork); in the child, T::after_fork_child() runs next, if T
// has one, to drop what belonged to the parent. T's mutex is its member `mutex`, or what its
// fork_mutex() returns (a class that keeps it private).
//
//     struct Registry { std::mutex mutex; std::vector<int> fds; void after_fork_child(); };
//     Registry& r = process_global<Registry>();

#include <mutex>

#include "base/fork.hpp"

namespace zmp::detail {

template <class T, ForkLayer Layer>
struct ProcessGlobalFork {
    // The fork handlers use this pointer, never process_global()'s first-use guard: a fork may
    // come while another thread is still making the object.
    static inline T* object = nullptr;

    static std::mutex& mutex_of(T& t) {
        if constexpr (requires { t.fork_mutex(); })
            return t.fork_mutex();
        else
            return t.mutex;
    }
    static void prepare() { mutex_of(*object).lock(); }
    static void parent() { mutex_of(*object).unlock(); }
    static void child() {
        mutex_of(*object).unlock();
        if constexpr (requires { object->after_fork_child(); }) object->after_fork_child();
    }
};

/// The process's one T, made (value-initialised) on first use.
template <class T, ForkLayer Layer = ForkLayer::runtime>
T& process_global() {
    using Fork = ProcessGlobalFork<T, Layer>;
    static T* const made = [] {
        Fork::object = new T();
        on_fork(Layer, {Fork::prepare, Fork::parent, Fork::child});
        return Fork::object;
    }();
    return *made;
}

}  // namespace zmp::detail
