#pragma once
// Everything zmp offers, in one include.

#include "zmp/any_value.hpp"
#include "zmp/authkey.hpp"
#include "zmp/context.hpp"
#include "zmp/errors.hpp"
#include "zmp/exceptions.hpp"
#include "zmp/function.hpp"
#include "zmp/logging.hpp"
#include "zmp/pipe.hpp"
#include "zmp/pool.hpp"
#include "zmp/process.hpp"
#include "zmp/queue.hpp"
#include "zmp/remote.hpp"
#include "zmp/shared_memory.hpp"
#include "zmp/sharedctypes.hpp"
#include "zmp/sync.hpp"
#include "zmp/timeout.hpp"
