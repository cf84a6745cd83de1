#pragma once
// Every error zmp raises, mapped from Python's multiprocessing exceptions. All derive from
// zmp::ProcessError (itself a std::runtime_error), so `catch (const zmp::ProcessError&)` catches
// anything zmp throws. Expected outcomes (a timeout in acquire(), join() or poll()) are return
// values, not exceptions.
//
//     try { conn.recv<int>(); } catch (const zmp::EOFError&) { /* the peer closed */ }
//
// This header is the vocabulary every layer of zmp shares, the transport layer included: it is
// self-contained (it includes nothing of zmp), so that errors are defined once, here.

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>
#include <utility>

namespace zmp {

/// Base of every error zmp raises (Python's multiprocessing.ProcessError).
class ProcessError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// A call made with a bad argument or in the wrong state: starting a process twice, closing a
/// running one, a negative size (Python raises ValueError or AssertionError for these).
class ValueError : public ProcessError {
public:
    using ProcessError::ProcessError;
};

/// An operating-system failure (fork, socket, mmap...) or a handle used after close / in the wrong
/// direction, as Python's OSError. `code()` is the errno value, or 0 when there is none.
class OSError : public ProcessError {
public:
    explicit OSError(const std::string& what, int code = 0) : ProcessError(what), code_(code) {}
    int code() const noexcept { return code_; }

private:
    int code_;
};

/// A frame that is malformed, truncated, oversized, or does not hold the expected type.
class ProtocolError : public ProcessError {
public:
    using ProcessError::ProcessError;
};

/// recv() on a connection whose peer has closed (or died) and that has nothing left to read.
class EOFError : public ProcessError {
public:
    using ProcessError::ProcessError;
};

/// A peer that does not hold the authkey, or a wrong key.
class AuthenticationError : public ProcessError {
public:
    using ProcessError::ProcessError;
};

/// Throws OSError("<what>: <strerror(code)>", code).
[[noreturn]] inline void throw_os_error(const std::string& what, int code) {
    throw OSError(what + ": " + std::strerror(code), code);
}

/// A blocking call gave up after its timeout where Python raises (AsyncResult.get(timeout)).
class TimeoutError : public ProcessError {
public:
    using ProcessError::ProcessError;
};

/// An operation that is not allowed in the current state of the program, where Python raises
/// RuntimeError (setting the start method twice).
class RuntimeError : public ProcessError {
public:
    using ProcessError::ProcessError;
};

/// recv_bytes_into() with a buffer too small: the whole message is kept in `message()`.
class BufferTooShort : public ProcessError {
public:
    explicit BufferTooShort(std::string message)
        : ProcessError("buffer too short for a message of " + std::to_string(message.size()) + " bytes"),
          message_(std::move(message)) {}
    const std::string& message() const noexcept { return message_; }

private:
    std::string message_;
};

/// An exception raised in another process whose type this process cannot rebuild (not a std
/// exception, not zmp's, not registered with ZMP_REGISTER_EXCEPTION): it keeps the original
/// type's name and message, and where it came from.
class RemoteError : public ProcessError {
public:
    RemoteError(std::string type, std::string message, std::string origin, int pid)
        : ProcessError(type + ": " + message + " (raised in " + origin + ", pid " + std::to_string(pid) + ")"),
          type_(std::move(type)),
          message_(std::move(message)),
          origin_(std::move(origin)),
          pid_(pid) {}
    const std::string& type_name() const noexcept { return type_; }
    const std::string& message() const noexcept { return message_; }
    const std::string& origin() const noexcept { return origin_; }
    int pid() const noexcept { return pid_; }

private:
    std::string type_, message_, origin_;
    int pid_;
};

/// A pool task whose worker died while running it (killed, crashed, or exited): which worker,
/// and how it ended. With max_retries the task is tried again first; this is what remains.
class WorkerLost : public ProcessError {
public:
    WorkerLost(std::string worker, int pid, int exitcode)
        : ProcessError("worker " + worker + " (pid " + std::to_string(pid) + ") " + describe(exitcode) +
                       " while running this task"),
          worker_(std::move(worker)),
          pid_(pid),
          exitcode_(exitcode) {}
    /// A worker that joined over the network and was lost (its host vanished, its connection
    /// broke): "worker <worker> (pid <pid>) <how> while running this task"; exitcode() is 0.
    WorkerLost(std::string worker, int pid, const std::string& how)
        : ProcessError("worker " + worker + " (pid " + std::to_string(pid) + ") " + how + " while running this task"),
          worker_(std::move(worker)),
          pid_(pid),
          exitcode_(0) {}
    const std::string& worker() const noexcept { return worker_; }
    int pid() const noexcept { return pid_; }
    /// Python's exit code of the worker: -N for signal N, else its exit status.
    int exitcode() const noexcept { return exitcode_; }
    /// The signal that killed the worker, or 0 if it exited.
    int signal() const noexcept { return exitcode_ < 0 ? -exitcode_ : 0; }

private:
    static std::string describe(int exitcode) {
        return exitcode < 0 ? "was killed by signal " + std::to_string(-exitcode)
                            : "exited with code " + std::to_string(exitcode);
    }
    std::string worker_;
    int pid_;
    int exitcode_;
};

/// A pending pool result whose pool was terminated before it could complete.
class PoolTerminated : public ProcessError {
public:
    using ProcessError::ProcessError;
};

/// An index outside a sequence (Array::get/set, ShareableList), as Python's IndexError.
class IndexError : public ProcessError {
public:
    using ProcessError::ProcessError;
};

/// A key a mapping does not hold (a Manager's dict: getitem, del, pop without a default,
/// popitem of an empty one), as Python's KeyError. what() shows the key.
class KeyError : public ProcessError {
public:
    using ProcessError::ProcessError;
};

/// An operation on a value of the wrong type (a Manager object's increment of a value that is not
/// a number, sort of values that do not order), as Python's TypeError.
class TypeError : public ProcessError {
public:
    using ProcessError::ProcessError;
};

/// A field an object does not have (a Manager's Namespace), as Python's AttributeError.
class AttributeError : public ProcessError {
public:
    using ProcessError::ProcessError;
};

/// A pool that can no longer run tasks: its initializer failed, or workers cannot be started.
/// Pending results fail with it, and so does every later submission.
class BrokenPool : public ProcessError {
public:
    using ProcessError::ProcessError;
};

/// The result of a pool task that was cancelled before it started (Future::cancel(), or
/// ProcessPoolExecutor::shutdown with cancel_futures), as concurrent.futures.CancelledError.
class CancelledError : public ProcessError {
public:
    using ProcessError::ProcessError;
};

/// Barrier::wait() on a broken barrier: a party timed out, the action failed, abort() or reset()
/// was called, or a party died while waiting (Python's threading.BrokenBarrierError).
class BrokenBarrierError : public ProcessError {
public:
    using ProcessError::ProcessError;
};

/// Queue::get() found nothing within its timeout, or get(block=false) on an empty queue
/// (Python's queue.Empty).
class Empty : public ProcessError {
public:
    using ProcessError::ProcessError;
};

/// Queue::put() found no room within its timeout, or put(block=false) on a full queue
/// (Python's queue.Full).
class Full : public ProcessError {
public:
    using ProcessError::ProcessError;
};

/// Creating something that already exists (a SharedMemory name), as Python's FileExistsError.
/// It is an OSError with code() == EEXIST.
class FileExistsError : public OSError {
public:
    explicit FileExistsError(const std::string& what) : OSError(what, EEXIST) {}
};

/// Opening or removing something that does not exist (attaching a SharedMemory name that was
/// never made or was unlinked), as Python's FileNotFoundError. An OSError with code() == ENOENT.
class FileNotFoundError : public OSError {
public:
    explicit FileNotFoundError(const std::string& what) : OSError(what, ENOENT) {}
};

}  // namespace zmp
