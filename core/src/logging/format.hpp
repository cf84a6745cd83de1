#pragma once
// Formatting a logging call's message (format.cpp, with {fmt}).

#include <cstddef>
#include <string>
#include <string_view>

#include "zmp/logging.hpp"

namespace zmp::detail {

/// The message `format` makes with `args` ({fmt}'s syntax). ValueError if they do not match.
std::string format_message(std::string_view format, const FormatArg* args, std::size_t count);

}  // namespace zmp::detail
