#pragma once
// POSIX shared-memory segments as zmp opens, maps, names and removes them. SharedMemory (names
// chosen by the user) and the segments behind Value/Array both go through here, so that every
// segment a process of the run creates is recorded with the runtime and error codes map to
// Python's exceptions in one place.

#include <cstddef>
#include <string>

namespace zmp::detail {

/// A whole segment mapped read-write into this process.
struct MappedSegment {
    std::byte* base = nullptr;
    std::size_t size = 0;
};

/// "/name" for a name given with or without its leading slash. ValueError for an empty name or
/// one with another '/', which shm_open would refuse.
std::string posix_segment_name(const std::string& name);

/// `bytes` random bytes as 2*bytes lowercase hex digits.
std::string random_hex(std::size_t bytes);

/// Whether and when create_segment records the new name with the runtime (so that the root
/// removes it if nobody else does). Before creating leaves no window for a leak, but a name that
/// turns out to exist has its record removed: only for names nobody else can have chosen.
enum class RecordSegment { no, before_create, after_create };

/// Creates segment `name` ("/...") of `size` (> 0) bytes, zero-filled, and maps it.
/// FileExistsError if the name exists, OSError otherwise.
MappedSegment create_segment(const std::string& name, std::size_t size, RecordSegment record);

/// Maps the whole of existing segment `name`. FileNotFoundError if there is none, ValueError if
/// it is empty, OSError otherwise.
MappedSegment attach_segment(const std::string& name);

/// Removes the name (mappings stay valid) and forgets it in the runtime's record.
/// FileNotFoundError if it does not exist (any more).
void unlink_segment(const std::string& name);

/// Unmaps; nothing happens for an empty mapping.
void unmap_segment(MappedSegment& mapping) noexcept;

}  // namespace zmp::detail
