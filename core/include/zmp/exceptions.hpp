#pragma once
// How an exception crosses a process boundary (pool tasks, and later managers): it travels as a
// record {type name, what(), origin process name, pid} and is rethrown in the caller with its
// own type when this process knows it — the std exceptions (std::runtime_error, std::logic_error
// and their standard subclasses, std::bad_alloc...), zmp's own errors, and types registered with
// ZMP_REGISTER_EXCEPTION — and as zmp::RemoteError naming the original type otherwise.
//
//     struct ParseError : std::runtime_error { using std::runtime_error::runtime_error; };
//     ZMP_REGISTER_EXCEPTION(ParseError);    // rethrown as ParseError(what) in the caller
//
// A registered type must be constructible from a std::string (its what()).

#include <exception>
#include <functional>
#include <string>

#include <msgpack.hpp>

#include "zmp/errors.hpp"
#include "zmp/transport/codec.hpp"

namespace zmp::detail {

struct ErrorRecord {
    std::string type;     ///< demangled type name
    std::string message;  ///< what(), or empty for a non-std exception
    std::string origin;   ///< name of the process that raised it
    int pid = 0;
    MSGPACK_DEFINE(type, message, origin, pid)
};

/// The record of the exception being handled (call inside a catch block).
ErrorRecord capture_current_exception();
/// The exception a record stands for, as an exception_ptr ready to be rethrown.
std::exception_ptr exception_from_record(const ErrorRecord& record);

void register_exception(const std::string& type, std::function<std::exception_ptr(const std::string&)> make);

template <class T>
struct ExceptionRegistration {
    explicit ExceptionRegistration(const char*) {
        register_exception(transport::type_name(typeid(T)),
                           [](const std::string& what) { return std::make_exception_ptr(T(what)); });
    }
};

}  // namespace zmp::detail

#define ZMP_REGISTER_EXCEPTION(T) \
    static const ::zmp::detail::ExceptionRegistration<T> ZMP_EXCEPTION_CAT(zmp_exception_, __LINE__)(#T)
#define ZMP_EXCEPTION_CAT2(a, b) a##b
#define ZMP_EXCEPTION_CAT(a, b) ZMP_EXCEPTION_CAT2(a, b)
