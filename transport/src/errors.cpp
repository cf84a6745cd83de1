#include "zmp/transport/errors.hpp"

#include <cstring>

namespace zmp {

void throw_os_error(const std::string& what, int code) { throw OSError(what + ": " + std::strerror(code), code); }

}  // namespace zmp
