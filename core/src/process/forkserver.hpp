#pragma once
// The fork server. It is a fresh run of this binary (so it has no thread and no ZeroMQ context,
// whatever its starter has), single-threaded, listening on a Unix socket in the run directory. A
// start request is one connection: the bootstrap goes in; the child's pid and a pidfd on it come
// back; the child's exit code comes back when it ends (the connection is the child's sentinel).
// Processes of the run share their parent's server (its address is the run's service
// "forkserver"); the server ends with the process that started it, and a process whose server is
// gone starts a new one on its next start(). The client side is forkserver_starter.cpp.

#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>

#include <msgpack.hpp>

#include <optional>
#include <string>
#include <vector>

namespace zmp::detail {

/// The run service that holds the server's socket path.
inline constexpr const char* kForkServerService = "forkserver";

/// What the starter tells a new server: where to listen, and the libraries to load first
/// (zmp::set_forkserver_preload). The server answers one byte once it serves, or the reason it
/// cannot.
struct ForkServerRequest {
    std::string path;
    std::vector<std::string> preload;
    MSGPACK_DEFINE(path, preload)
};

/// The server's socket address. ValueError if `path` is too long for one.
sockaddr_un forkserver_address(const std::string& path);

/// The pid of the fork server this process started, if it started one (for tests and tools).
std::optional<pid_t> forkserver_pid();

/// The server's main loop, entered by zmp::init() in a process started as a fork server.
[[noreturn]] void forkserver_main(int handshake_fd);

}  // namespace zmp::detail
