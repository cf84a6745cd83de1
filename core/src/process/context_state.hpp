#pragma once
// The process-wide default start method, shared by zmp/context.hpp and Process::start().

#include <optional>

#include "zmp/process.hpp"

namespace zmp::detail {

/// The default start method, fixing it (fork unless set otherwise).
StartMethod use_default_start_method();
/// The default start method if one has been chosen, without fixing it.
std::optional<StartMethod> peek_default_start_method();

}  // namespace zmp::detail
