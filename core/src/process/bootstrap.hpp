#pragma once
// The hand-off to a child that is not a copy of its parent (spawn, forkserver): one message with
// everything the child needs to become itself (the run, its identity, its target and arguments),
// plus the descriptors that travel with it (Connections in the arguments, the parent's pidfd).

#include <sys/types.h>

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "process/process_state.hpp"
#include "zmp/function.hpp"
#include "zmp/transport/fd_channel.hpp"

namespace zmp::detail {

struct Bootstrap {
    // The run.
    int root_pid = 0;
    std::string run_dir;
    std::string authkey;
    std::map<std::string, std::string> services;
    std::vector<std::string> argv;
    // The child.
    std::string name;
    bool daemon = false;
    std::vector<int> identity;
    int parent_pid = 0;
    std::string parent_name;
    bool parent_main_thread = true;
    int method = 0;
    // Its work: a travelling target, and/or a registered Process subclass with its state.
    bool has_target = false;
    FunctionId target;
    std::string args;           // msgpack of the argument tuple
    std::string process_type;   // key of a ZMP_REGISTER_PROCESS type, or empty
    std::string process_state;  // msgpack of that object
    int parent_pidfd = -1;      // index among the message's descriptors
    std::vector<int> stdio;     // indexes of the parent's fds 0, 1, 2 (-1: not passed), fork server only
    std::string build_id;       // the parent's program (set_executable may start another)
    MSGPACK_DEFINE_MAP(root_pid, run_dir, authkey, services, argv, name, daemon, identity, parent_pid, parent_name,
                       parent_main_thread, method, has_target, target, args, process_type, process_state, parent_pidfd,
                       stdio, build_id)
};

/// A packed bootstrap and the descriptors to send with it (borrowed: they stay open in the parent).
struct BootstrapMessage {
    msgpack::sbuffer bytes;
    std::vector<int> fds;
};

/// Builds the bootstrap that starts `process` with `method`. ValueError if its target, its
/// arguments or its subclass cannot travel.
BootstrapMessage make_bootstrap(const ProcessState& st, const Process& process, StartMethod method);

/// In a fresh child (spawn) or a child of the fork server: becomes the process `message`
/// describes and runs it. If `ready` is given, one byte goes back through it once the child has
/// taken over its identity (the spawn parent waits for it). Never returns.
[[noreturn]] void run_bootstrapped_child(transport::ChannelMessage message, transport::FdChannel* ready);

}  // namespace zmp::detail
