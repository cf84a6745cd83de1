#pragma once
// Python's logging levels, on their own: zmp's lowest components log (base/log.hpp) without
// depending on the logging component that carries records to the root (zmp/logging.hpp).
//
//     zmp::log_to_stderr(zmp::LogLevel::info);
//     zmp::level_name(zmp::LogLevel::subwarning);   // "SUBWARNING"

#include <string>

namespace zmp {

/// Python's logging levels, with multiprocessing's SUBDEBUG and SUBWARNING.
enum class LogLevel : int {
    notset = 0,  // a handler at notset writes every record
    subdebug = 5,
    debug = 10,
    info = 20,
    subwarning = 25,
    warning = 30,
    error = 40,
    critical = 50,
};

/// Python's level names: "DEBUG", "SUBWARNING", ...; "Level N" for other values.
std::string level_name(LogLevel level);

}  // namespace zmp
