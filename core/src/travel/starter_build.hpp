#pragma once
// A child that another program started (zmp::set_executable): the functions its starter sends by
// their place in the main program name places in that other program, which mean nothing here.

#include <string>

namespace zmp::detail {

/// Records the build id of the program that started this process (from its bootstrap). When it
/// is not this program's, resolve() (zmp/function.hpp) takes functions by registered name only and
/// raises ValueError for one that would have to be found by its address in the main program.
void note_starter_build(const std::string& build_id);

}  // namespace zmp::detail
