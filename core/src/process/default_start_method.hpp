#pragma once
// The process-wide default start method, as Python's DefaultContext keeps it: unset until chosen,
// and fixed (no longer settable without force) once anything has used it. zmp/context.hpp sets it;
// Process::start() and the pool use it.

#include <optional>

#include "zmp/process.hpp"

namespace zmp::detail {

/// The default start method, fixing it (fork unless set otherwise).
StartMethod use_default_start_method();
/// The default start method if one has been chosen, without fixing it.
std::optional<StartMethod> peek_default_start_method();
/// Sets and fixes the default, as a child takes over its parent's method.
void adopt_start_method(StartMethod method);
/// zmp::set_start_method(): RuntimeError("context has already been set") once fixed, unless
/// `force`; with `force`, an empty method resets the default to "not yet chosen".
void set_default_start_method(std::optional<StartMethod> method, bool force);

}  // namespace zmp::detail
