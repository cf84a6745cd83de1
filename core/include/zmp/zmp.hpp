#pragma once
// Everything zmp offers, in one include.

#include "zmp/errors.hpp"
#include "zmp/pipe.hpp"
#include "zmp/process.hpp"
#include "zmp/sync.hpp"
#include "zmp/timeout.hpp"
