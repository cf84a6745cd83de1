#pragma once
// The errors the transport layer can raise. They sit at the bottom of zmp's error hierarchy so
// that every layer above can throw and catch them; users include <zmp/errors.hpp>, which adds
// the rest (Empty, Full, WorkerLost, ...).

#include <stdexcept>
#include <string>

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
[[noreturn]] void throw_os_error(const std::string& what, int code);

}  // namespace zmp
