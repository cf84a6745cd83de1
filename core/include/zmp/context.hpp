#pragma once
// Start methods and contexts, as in Python: fork, spawn and forkserver; a Context makes Processes
// (and Pipes) that use its method; the default is fork on Linux.
//
//     int main(int argc, char** argv) {
//         zmp::init(argc, argv);                        // first line of every zmp program
//         zmp::set_start_method(zmp::StartMethod::spawn);
//         zmp::Process p(work, 42);                     // started with spawn
//         auto ctx = zmp::get_context("forkserver");
//         zmp::Process q = ctx.Process(work, 43);        // started by the fork server
//     }
//
// - fork: the child is a copy of the parent (any callable works; the fastest start).
// - spawn: the child is a fresh run of this same binary (/proc/self/exe): its main() calls
//   zmp::init(), which receives the target and its arguments as a message and runs it.
// - forkserver: a single-threaded server, itself a fresh run of this binary started on first use
//   (before it has any thread or ZeroMQ context), forks children on request; killed, it is
//   restarted by the next start().
// Under spawn and forkserver the target must travel (zmp/function.hpp): a plain function or a
// capture-free lambda, with msgpack arguments; start() raises zmp::ValueError otherwise.
//
// Threading: the default method is process-wide; set it before starting processes.

#include <cstddef>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "zmp/manager.hpp"
#include "zmp/pipe.hpp"
#include "zmp/process.hpp"
#include "zmp/queue.hpp"
#include "zmp/sharedctypes.hpp"
#include "zmp/sync.hpp"

namespace zmp {

class Pool;
struct PoolOptions;

/// Must be the first statement of main() in every program that uses zmp. In the root it records
/// argv (spawned children get the same argv) and returns. In a child started by spawn it runs the
/// child's target and never returns; in the fork server it serves and never returns. A program
/// whose first argument is `--zmp-worker ENDPOINT` (followed by zmp::worker_main()'s flags other
/// than --connect: `./myservice --zmp-worker tcp://head:5555 --authkey-file cluster.key`) joins
/// that pool as a worker (zmp/worker.hpp) and exits with worker_main()'s code instead of returning.
void init(int argc, char** argv);

std::string_view to_string(StartMethod method);
/// ValueError("cannot find context for '<name>'") for anything but fork, spawn and forkserver.
StartMethod parse_start_method(std::string_view name);

class Context {
public:
    explicit Context(StartMethod method) : method_(method) {}
    StartMethod method() const noexcept { return method_; }
    std::string_view get_start_method() const noexcept { return to_string(method_); }

    /// Python's ctx.Process(target, args): a Process started with this context's method.
    template <class F, class... Args>
    zmp::Process Process(F&& target, Args&&... args) const {
        return zmp::Process(ProcessOptions{.method = method_}, std::forward<F>(target), std::forward<Args>(args)...);
    }
    template <class F, class... Args>
    zmp::Process Process(ProcessOptions options, F&& target, Args&&... args) const {
        options.method = method_;
        return zmp::Process(std::move(options), std::forward<F>(target), std::forward<Args>(args)...);
    }
    std::pair<Connection, Connection> Pipe(bool duplex = true) const { return zmp::Pipe(duplex); }
    /// Python's ctx.Queue(), ctx.SimpleQueue(), ctx.JoinableQueue(): the same for every method.
    template <class T>
    zmp::Queue<T> Queue(std::int64_t maxsize = 0, const QueueOptions& options = {}) const {
        return zmp::Queue<T>(maxsize, options);
    }
    template <class T>
    zmp::SimpleQueue<T> SimpleQueue() const {
        return zmp::SimpleQueue<T>();
    }
    template <class T>
    zmp::JoinableQueue<T> JoinableQueue(std::int64_t maxsize = 0, const QueueOptions& options = {}) const {
        return zmp::JoinableQueue<T>(maxsize, options);
    }
    /// Python's ctx.Manager(): the same for every method (its objects live in the run's broker).
    zmp::Manager Manager() const { return zmp::Manager(); }

    /// Python's ctx.Pool(processes): a Pool whose workers start with this context's method
    /// (cpu_count() workers, or `processes`: below 1 is a ValueError, as Pool(n)). Include
    /// zmp/pool.hpp to use it. With an initializer: zmp::Pool(PoolOptions{.context =
    /// ctx.method()}, init, initargs...).
    zmp::Pool Pool() const;
    zmp::Pool Pool(int processes) const;
    /// The same with every PoolOptions; `options.context` is set to this context's method.
    zmp::Pool Pool(PoolOptions options) const;

    /// Python's ctx.Lock(), ctx.RLock(), ctx.Semaphore(v), ctx.BoundedSemaphore(v), ctx.Event(),
    /// ctx.Condition(lock), ctx.Barrier(parties, action, timeout): the objects of zmp/sync.hpp,
    /// which work the same whatever method the processes that share them were started with.
    template <class... A>
    zmp::Lock Lock(A&&... args) const {
        return zmp::Lock(std::forward<A>(args)...);
    }
    template <class... A>
    zmp::RLock RLock(A&&... args) const {
        return zmp::RLock(std::forward<A>(args)...);
    }
    zmp::Semaphore Semaphore(int value = 1) const { return zmp::Semaphore(value); }
    zmp::BoundedSemaphore BoundedSemaphore(int value = 1) const { return zmp::BoundedSemaphore(value); }
    zmp::Event Event() const { return zmp::Event(); }
    template <class... A>
    zmp::Condition Condition(A&&... args) const {
        return zmp::Condition(std::forward<A>(args)...);
    }
    template <class... A>
    zmp::Barrier Barrier(A&&... args) const {
        return zmp::Barrier(std::forward<A>(args)...);
    }

    /// Python's ctx.Value(type, x, lock=...), ctx.Array(type, n_or_items, lock=...), and the Raw
    /// forms: the handles of zmp/sharedctypes.hpp, the same for every method.
    template <class T, class... A>
    zmp::Value<T> Value(A&&... args) const {
        return zmp::Value<T>(std::forward<A>(args)...);
    }
    template <class T, class... A>
    zmp::Array<T> Array(A&&... args) const {
        return zmp::Array<T>(std::forward<A>(args)...);
    }
    template <class T>
    zmp::Array<T> Array(std::initializer_list<T> items, LockOption lock = true) const {
        return zmp::Array<T>(items, std::move(lock));
    }
    template <class T, class... A>
    zmp::RawValue<T> RawValue(A&&... args) const {
        return zmp::RawValue<T>(std::forward<A>(args)...);
    }
    template <class T, class... A>
    zmp::RawArray<T> RawArray(A&&... args) const {
        return zmp::RawArray<T>(std::forward<A>(args)...);
    }

private:
    StartMethod method_;
};

/// The context of the default start method (this fixes the default, as in Python).
Context get_context();
Context get_context(StartMethod method);
Context get_context(std::string_view method);

/// Sets the default start method. Once the default has been fixed — by an earlier call, by
/// get_context() or get_start_method(), or by starting a process with the default — it raises
/// zmp::RuntimeError("context has already been set") unless `force` is true. With `force`, an
/// empty method resets the default to "not yet chosen".
void set_start_method(std::optional<StartMethod> method, bool force = false);
void set_start_method(std::string_view method, bool force = false);
/// The default start method (fixing it); with allow_none, empty while none has been chosen.
std::optional<StartMethod> get_start_method(bool allow_none = false);
/// Every start method this platform offers, the default first: fork, spawn, forkserver.
std::vector<StartMethod> get_all_start_methods();

/// Python's set_forkserver_preload(module_names). Python imports the named modules in the fork
/// server so that each child it forks has them already; zmp's fork server is a fresh run of this
/// binary, and what it can hold beyond the binary is shared libraries: it loads (dlopen, RTLD_NOW |
/// RTLD_GLOBAL) each of `libraries`, in order, before it forks any child. Their code and what
/// they register as they load (ZMP_REGISTER functions, ZMP_TASK tasks, ZMP_REGISTER_EXCEPTION
/// types) are then in every forkserver child, from its first instruction, without each child
/// loading them. A target that lives in such a library travels as any function does: by its
/// registered name, or by its module and offset — so a process that dlopen()ed the library
/// itself, under the same path, can start children on its functions. Without the preload, such
/// a child cannot find its target and ends with exit code 1.
/// Takes effect for fork servers started afterwards, in this process and the children it forks
/// later (as in Python: call it before the first forkserver child); a running server keeps what
/// it has. Each call replaces the list; an empty list loads nothing.
/// Errors: ValueError here for an empty name (or one holding a NUL byte); a library that cannot
/// be loaded stops the fork server from starting: the start() that needed it raises
/// OSError("the fork server did not start: cannot preload <name>: <dlerror>"), and so does every
/// later one until the list is fixed. Threading: any thread.
///
///     zmp::set_forkserver_preload({"/opt/app/lib/libtasks.so"});
///     zmp::get_context("forkserver").Process(task_in_libtasks, 42).start();
void set_forkserver_preload(const std::vector<std::string>& libraries);

/// Python's set_executable(path): spawn children, and fork servers started from now on, run the
/// program at `path` instead of this binary (/proc/self/exe), with the same argv otherwise; an
/// empty path goes back to this binary. In this process and the children it forks later.
/// The program must be linked with zmp and call zmp::init(argc, argv) first (a child whose
/// main() does not is reported by start(), as for this binary). What reaches it: every child
/// carries its starter's build id (the GNU build id); when the program is another build, a target
/// travels by registered name only — ZMP_REGISTER(fn) or ZMP_TASK(name, fn) in both programs,
/// as for a Pool's joined workers — and so do a Pool's tasks in workers it runs; anything else is
/// refused rather than guessed at by address: start() raises ProcessError("the spawned child of
/// ... could not start: ... can only take functions registered by name ..."), a Pool task fails
/// with ValueError. A registered Process subclass (ZMP_REGISTER_PROCESS) travels by its name.
/// Errors: ValueError here if `path` is not an executable file, or holds no trace of zmp (it is
/// not a zmp program). Threading: any thread; set it before starting the children it concerns.
///
///     zmp::set_executable("/opt/app/bin/app-worker");        // registers ZMP_REGISTER(work) too
///     zmp::get_context("spawn").Process(work, 42).start();   // runs in app-worker
void set_executable(const std::string& path);

}  // namespace zmp
