#pragma once
// The contract between a pool's front (the templates of zmp::Pool and zmp::ThreadPool, the
// results users hold) and the engine that runs its tasks (the dispatcher of worker processes, or
// the threads of a ThreadPool): what a job is, how the engine completes its result, and what the
// engine offers a result in return. Engines know results only as JobSinks, results know their
// engine only as a ResultHost: neither includes the other.
//
// Not a public API: zmp/pool.hpp's templates need it, so it is installed with the headers.

#include <msgpack.hpp>

#include <cstddef>
#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "zmp/function.hpp"

namespace zmp::detail {

/// What a void task's result is stored as (it travels as nil).
struct Nothing {};
template <class T>
using stored_t = std::conditional_t<std::is_void_v<T>, Nothing, T>;

/// Descriptors owned by a chunk (Connections among its arguments), closed with the last copy.
class OwnedFds {
public:
    explicit OwnedFds(std::vector<int> fds) : fds_(std::move(fds)) {}
    OwnedFds(const OwnedFds&) = delete;
    OwnedFds& operator=(const OwnedFds&) = delete;
    ~OwnedFds();
    const std::vector<int>& fds() const { return fds_; }

private:
    std::vector<int> fds_;
};

/// Null for no descriptors: most chunks carry none.
std::shared_ptr<OwnedFds> owned(std::vector<int> fds);

/// One chunk of a job's input: the msgpack array of argument tuples, where it starts, and the
/// descriptors that travel with it.
struct EncodedChunk {
    std::string args;
    std::size_t first = 0;
    std::size_t count = 0;
    std::shared_ptr<OwnedFds> fds;  // null when there are none
};

/// A function as the pool sends it: pointer and trampoline here, identity for the workers.
struct TaskFunction {
    const void* function = nullptr;
    Trampoline trampoline = nullptr;
};

/// What the engine offers the results of its jobs.
class ResultHost {
public:
    virtual ~ResultHost() = default;
    /// Runs `callback` on the pool's callback thread (here, at once, once the pool has finished).
    virtual void post_callback(std::function<void()> callback) = 0;
    /// Makes the engine look at its jobs again (a stream consumer made room).
    virtual void wake() = 0;
    /// A job was cancelled before it started: the engine drops it, unread and unrun.
    virtual void withdraw() = 0;
};

/// How the engine completes a job's result. Calls come from the engine's threads; the result
/// serialises them.
class JobSink {
public:
    virtual ~JobSink() = default;
    /// The engine that runs the job, told once when the job is submitted.
    virtual void attach(std::weak_ptr<ResultHost> host) = 0;
    /// Called before the engine reads the job's first chunk: false if the job was cancelled
    /// first (the engine drops it, unread and unrun); from then on it cannot be cancelled.
    virtual bool start() = 0;
    /// Whether the job was cancelled before it started.
    virtual bool cancelled() const = 0;
    /// Items first, first+1... succeeded: `results` is the msgpack array of their values.
    /// Throws ProtocolError if a value does not decode; the engine then fails the chunk with it.
    virtual void on_results(std::size_t first, const msgpack::object& results) = 0;
    /// Items first.. first+count-1 failed with `error`.
    virtual void on_chunk_failed(std::size_t first, std::size_t count, std::exception_ptr error) = 0;
    /// Reading the input raised `error` after `items_read` items.
    virtual void on_input_failed(std::exception_ptr error, std::size_t items_read) = 0;
    /// Every chunk read has finished and the input is exhausted.
    virtual void on_all_done() = 0;
    /// Fails the job at once (pool terminated or broken) unless it is already complete.
    virtual void abort(std::exception_ptr error) = 0;
    /// For streams: whether the engine may read more chunks while `in_flight` items are out.
    virtual bool wants_more(std::size_t in_flight) const = 0;
    /// For streams: true once nobody will read the results again; the input is not read further.
    virtual bool abandoned() const = 0;
};

/// A job for the process engine: where its chunks come from, and where its results go.
struct Job {
    TaskFunction function;
    /// Fills the next chunk; false once the input is exhausted. Runs on the engine's thread; an
    /// exception from the input ends the job there (its earlier chunks still complete).
    std::function<bool(EncodedChunk&)> next_chunk;
    std::shared_ptr<JobSink> result;
    std::size_t expected_items = 0;  // 0 if unknown
};

/// A job for the thread engine. Its chunks carry their own work: the typed code that made them
/// runs the task and delivers the values (or the chunk's error) to the result itself.
struct ThreadJob {
    /// Reads the next chunk of the input and returns the work that runs it, setting `count` to
    /// its items; an empty function once the input is exhausted. Runs under the engine's lock
    /// (one reader of the input at a time); an exception from the input ends the job there. The
    /// work itself runs on a pool thread, outside the lock, and never throws.
    std::function<std::function<void()>(std::size_t& count)> next_chunk;
    std::shared_ptr<JobSink> result;
};

}  // namespace zmp::detail

template <>
struct zmp::is_packable<zmp::detail::Nothing> : std::true_type {};

// A void task's result: nil on the wire, Nothing in the result's storage.
namespace msgpack {
MSGPACK_API_VERSION_NAMESPACE(MSGPACK_DEFAULT_API_NS) {
    namespace adaptor {
    template <>
    struct convert<zmp::detail::Nothing> {
        const msgpack::object& operator()(const msgpack::object& obj, zmp::detail::Nothing&) const { return obj; }
    };
    template <>
    struct pack<zmp::detail::Nothing> {
        template <class Stream>
        packer<Stream>& operator()(packer<Stream>& out, const zmp::detail::Nothing&) const {
            out.pack_nil();
            return out;
        }
    };
    }  // namespace adaptor
}
}  // namespace msgpack
