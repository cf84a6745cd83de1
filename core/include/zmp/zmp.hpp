#pragma once
// Everything zmp offers, in one include.

#include "zmp/errors.hpp"
#include "zmp/pipe.hpp"
#include "zmp/process.hpp"
#include "zmp/shared_memory.hpp"
#include "zmp/sharedctypes.hpp"
#include "zmp/timeout.hpp"
