#pragma once
// Every error zmp raises, mapped from Python's multiprocessing exceptions. All derive from
// zmp::ProcessError (itself a std::runtime_error), so `catch (const zmp::ProcessError&)` catches
// anything zmp throws. Expected outcomes (a timeout in acquire(), join() or poll()) are return
// values, not exceptions.
//
//     try { conn.recv<int>(); } catch (const zmp::EOFError&) { /* the peer closed */ }

#include <cerrno>
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

/// An index outside a sequence (Array::get/set, ShareableList), as Python's IndexError.
class IndexError : public ProcessError {
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
