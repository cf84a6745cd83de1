#pragma once
// The authkey: the secret every process of a deployment shares. Each run's root makes one at
// start and its children inherit it; processes on other hosts present it (CURVE keys derived from
// it, zmp/transport/security.hpp) to join a pool or a broker. Python's
// multiprocessing.current_process().authkey, with files for handing it to other hosts.
//
// An authkey file holds the key as 64 hexadecimal digits (either case), optionally followed by one
// newline, and nothing else; it must be readable by its owner only (mode 0600 or 0400), as ssh
// requires of private keys. `(umask 077; openssl rand -hex 32 > FILE)` makes one too.
//
//     zmp::write_authkey_file("cluster.key", zmp::generate_authkey());
//     zmp::Authkey key = zmp::read_authkey_file("cluster.key");

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace zmp {

inline constexpr std::size_t kAuthkeySize = 32;
using Authkey = std::array<std::uint8_t, kAuthkeySize>;

/// 32 bytes from the operating system's random generator. Throws OSError if there is none.
Authkey generate_authkey();

/// Reads the authkey in `path`. Throws, naming the file and what to do: OSError (code() = errno,
/// ENOENT for a missing file) if it cannot be read; ValueError if group or others may access it,
/// or if it is not 64 hex digits and an optional newline.
Authkey read_authkey_file(const std::string& path);

/// Creates `path` with mode 0600 holding `key`, flushed to disk. Never replaces a file: OSError
/// with code() EEXIST if `path` exists; OSError for any other failure (nothing half-written is
/// left behind).
void write_authkey_file(const std::string& path, const Authkey& key);

/// This run's authkey: made by the root process, the same in every child under every start
/// method. Thread-safe.
const Authkey& current_authkey();

}  // namespace zmp
