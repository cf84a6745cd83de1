#pragma once
// Every error zmp raises, mapped from Python's multiprocessing exceptions. All derive from
// zmp::ProcessError (itself a std::runtime_error), so `catch (const zmp::ProcessError&)` catches
// anything zmp throws. Expected outcomes (a timeout in acquire(), join() or poll()) are return
// values, not exceptions.
//
//     try { conn.recv<int>(); } catch (const zmp::EOFError&) { /* the peer closed */ }

#include <string>
#include <utility>

#include "zmp/transport/errors.hpp"  // ProcessError, ValueError, OSError, ProtocolError, EOFError, AuthenticationError

namespace zmp {

/// A blocking call gave up after its timeout where Python raises (AsyncResult.get(timeout)).
class TimeoutError : public ProcessError {
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

/// Barrier::wait() on a broken barrier: a party timed out, the action failed, abort() or reset()
/// was called, or a party died while waiting (Python's threading.BrokenBarrierError).
class BrokenBarrierError : public ProcessError {
public:
    using ProcessError::ProcessError;
};

}  // namespace zmp
