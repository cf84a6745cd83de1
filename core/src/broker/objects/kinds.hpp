#pragma once
// The registry of object kinds (objects/kinds.cpp): each kind's file defines its KindEntry; the
// server finds the entry of a CREATE's kind here, and the handler of each op in that entry.
#include "broker/objects/object.hpp"

namespace zmp::detail::broker {

extern const KindEntry lock_kind;       // Lock, RLock
extern const KindEntry semaphore_kind;  // Semaphore, BoundedSemaphore
extern const KindEntry event_kind;
extern const KindEntry condition_kind;
extern const KindEntry barrier_kind;
extern const KindEntry queue_kind;  // Queue, JoinableQueue
extern const KindEntry manager_kind;          // the Manager itself (objects/managed.cpp)
extern const KindEntry managed_mapping_kind;  // the Manager's dict and Namespace
extern const KindEntry managed_list_kind;
extern const KindEntry managed_value_kind;

/// The entry serving `kind`, or nullptr.
const KindEntry* find_kind(Kind kind);

}  // namespace zmp::detail::broker
