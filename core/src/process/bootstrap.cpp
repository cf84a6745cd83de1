#include "process/bootstrap.hpp"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>
#include <typeinfo>
#include <unordered_map>

#include "travel/fd_passing.hpp"
#include "runtime/runtime.hpp"
#include "zmp/context.hpp"

extern char** environ;

namespace zmp::detail {
namespace {

struct ProcessTypes {
    std::mutex mutex;
    std::unordered_map<std::string, ProcessType> by_key;
};

ProcessTypes& process_types() {
    static ProcessTypes* types = new ProcessTypes();
    return *types;
}

const ProcessType* find_process_type(const std::string& key) {
    ProcessTypes& types = process_types();
    std::lock_guard lock(types.mutex);
    auto it = types.by_key.find(key);
    return it == types.by_key.end() ? nullptr : &it->second;
}

// Starts a program's process object as the bootstrap describes it; the object is made here, in
// the child, before the child takes on its identity (making it may count a child number).
std::unique_ptr<Process> rebuild_process(const Bootstrap& b) {
    std::unique_ptr<Process> process;
    if (!b.process_type.empty()) {
        const ProcessType* type = find_process_type(b.process_type);
        if (type == nullptr) throw ValueError("this binary has no Process type registered as " + b.process_type);
        process = type->make();
        transport::Decoded state = transport::decode(b.process_state.data(), b.process_state.size());
        type->unpack(*process, state.get());
    } else {
        process = std::make_unique<Process>(std::make_shared<ProcessState>());
    }
    if (b.has_target) {
        auto [function, trampoline] = resolve(b.target);
        auto args = std::make_shared<transport::Decoded>(transport::decode(b.args.data(), b.args.size()));
        ProcessAccess::set_local_target(*process,
                                        [function, trampoline, args] { trampoline(function, args->get(), nullptr); });
    }
    return process;
}

}  // namespace

void register_process_type(const std::string& key, ProcessType type) {
    ProcessTypes& types = process_types();
    std::lock_guard lock(types.mutex);
    types.by_key[key] = std::move(type);
}

BootstrapMessage make_bootstrap(const ProcessState& st, const Process& process, StartMethod method) {
    Runtime& rt = Runtime::instance();
    Bootstrap b;
    b.root_pid = rt.root_pid();
    b.run_dir = rt.run_dir();
    b.authkey.assign(reinterpret_cast<const char*>(rt.authkey().data()), rt.authkey().size());
    b.services = rt.services();
    b.argv = rt.argv();
    b.name = st.name;
    b.daemon = st.daemon;
    b.identity = st.identity;
    b.parent_pid = rt.pid();
    b.parent_name = rt.name();
    b.parent_main_thread = ProcessAccess::on_main_thread();
    b.method = static_cast<int>(method);

    const std::type_info& type = typeid(process);
    const bool subclass = type != typeid(Process);
    if (subclass) {
        if (find_process_type(type.name()) == nullptr) {
            throw ValueError("a " + transport::type_name(type) + " cannot be started with " +
                             std::string(to_string(method)) + ": register it with ZMP_REGISTER_PROCESS(" +
                             transport::type_name(type) + ") and describe its members with MSGPACK_DEFINE");
        }
    }
    if (st.target) {
        if (!st.travel.cannot_travel.empty()) {
            throw ValueError("cannot start " + st.name + " with " + std::string(to_string(method)) + ": " +
                             st.travel.cannot_travel);
        }
        b.has_target = true;
        b.target = identify(st.travel.function, st.travel.trampoline);
    }

    BootstrapMessage out;
    {
        // Connections among the arguments (or the subclass's members) travel as descriptors.
        FdCollector collector;
        if (b.has_target) {
            msgpack::sbuffer args;
            msgpack::packer<msgpack::sbuffer> packer(args);
            st.travel.pack_args(packer);
            b.args.assign(args.data(), args.size());
        }
        if (subclass) {
            msgpack::sbuffer state;
            msgpack::packer<msgpack::sbuffer> packer(state);
            find_process_type(type.name())->pack(process, packer);
            b.process_type = type.name();
            b.process_state.assign(state.data(), state.size());
        }
        out.fds = collector.fds();
    }
    out.fds.push_back(rt.self_pidfd());
    b.parent_pidfd = static_cast<int>(out.fds.size()) - 1;
    if (method == StartMethod::forkserver) {
        // A spawned child inherits the parent's stdin, stdout and stderr as they are now; a child
        // of the fork server would get the server's, so the parent's travel with the request.
        for (int fd = 0; fd <= 2; ++fd) {
            if (::fcntl(fd, F_GETFD) == -1) {
                b.stdio.push_back(-1);
            } else {
                out.fds.push_back(fd);
                b.stdio.push_back(static_cast<int>(out.fds.size()) - 1);
            }
        }
    }
    msgpack::pack(out.bytes, b);
    return out;
}

[[noreturn]] void run_bootstrapped_child(transport::ChannelMessage message, transport::FdChannel* ready) {
    Bootstrap b;
    std::unique_ptr<Process> process;
    try {
        b = transport::decode_as<Bootstrap>(message.data.get(), message.size);
        if (b.authkey.size() != Authkey{}.size()) throw ProtocolError("bootstrap carries a malformed authkey");
        Authkey key;
        std::memcpy(key.data(), b.authkey.data(), key.size());
        Runtime& rt = Runtime::instance();
        rt.adopt_run(b.root_pid, b.run_dir, key, b.services);
        rt.set_argv(b.argv);
        auto take_fd = [&message](int index) {
            if (index < 0 || static_cast<std::size_t>(index) >= message.fds.size()) return -1;
            return std::exchange(message.fds[static_cast<std::size_t>(index)], -1);
        };
        rt.set_inherited_parent_pidfd(take_fd(b.parent_pidfd));
        for (std::size_t target = 0; target < b.stdio.size() && target <= 2; ++target) {
            const int fd = take_fd(b.stdio[target]);
            if (fd < 0) continue;
            ::dup2(fd, static_cast<int>(target));
            ::close(fd);
        }
        // The received descriptors stay on offer to the Connections among the arguments for the
        // child's whole life (the supply is never destroyed: the child ends with _exit).
        new FdSupply(std::move(message.fds));
        process = rebuild_process(b);
        rt.become_child(ChildIdentity{b.name, b.daemon, b.identity, b.parent_pid, b.parent_name, b.parent_main_thread});
        adopt_start_method(static_cast<StartMethod>(b.method));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "zmp: a %s child could not start: %s\n",
                     b.method == static_cast<int>(StartMethod::forkserver) ? "forkserver" : "spawned", e.what());
        ::_exit(70);
    }
    if (ready != nullptr) {
        const char byte = 'R';
        try {
            ready->send(&byte, 1);
        } catch (const ProcessError&) {
            ::_exit(70);  // the parent gave up on us
        }
        ready->close();
    }
    ProcessAccess::run_child(*process);
}

pid_t spawn_self(const char* env_name, int handed_fd) {
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attributes;
    ::posix_spawn_file_actions_init(&actions);
    ::posix_spawnattr_init(&attributes);
    // The child gets the handed descriptor as fd 3 and nothing else beyond stdio: descriptors
    // this process opened do not leak into it.
    ::posix_spawn_file_actions_adddup2(&actions, handed_fd, 3);
    ::posix_spawn_file_actions_addclosefrom_np(&actions, 4);
    sigset_t none;
    sigemptyset(&none);
    ::posix_spawnattr_setsigmask(&attributes, &none);
    ::posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK);

    const auto& args = Runtime::instance().argv();
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    std::string program_name = "zmp-child";
    if (argv.empty()) argv.push_back(program_name.data());
    argv.push_back(nullptr);

    const std::string marker = std::string(env_name) + "=3";
    std::vector<char*> env;
    for (char** e = environ; *e != nullptr; ++e) {
        if (std::strncmp(*e, "ZMP_SPAWN_FD=", 13) != 0 && std::strncmp(*e, "ZMP_FORKSERVER_FD=", 18) != 0) {
            env.push_back(*e);
        }
    }
    env.push_back(const_cast<char*>(marker.c_str()));
    env.push_back(nullptr);

    pid_t pid = 0;
    const int rc = ::posix_spawn(&pid, "/proc/self/exe", &actions, &attributes, argv.data(), env.data());
    ::posix_spawn_file_actions_destroy(&actions);
    ::posix_spawnattr_destroy(&attributes);
    if (rc != 0) throw_os_error("posix_spawn", rc);
    return pid;
}

std::unique_ptr<Popen> spawn_start(const ProcessState& st, const Process& process) {
    if (Runtime::instance().argv().empty()) {
        throw ValueError("the spawn start method needs zmp::init(argc, argv) as the first line of main()");
    }
    BootstrapMessage boot = make_bootstrap(st, process, StartMethod::spawn);
    auto [mine, theirs] = transport::FdChannel::pair();
    const pid_t pid = spawn_self("ZMP_SPAWN_FD", theirs.fd());
    theirs.close();
    auto popen = std::make_unique<WaitpidPopen>(pid);
    try {
        mine.send(boot.bytes.data(), boot.bytes.size(), boot.fds);
        transport::ChannelMessage reply;
        if (mine.recv(reply) && reply.size == 1) return popen;
    } catch (const ProcessError&) {
        // the child is gone; find out how below
    }
    while (!popen->poll()) wait_fd_readable(popen->sentinel(), Deadline::never());
    throw ProcessError("the spawned child of " + st.name + " (pid " + std::to_string(pid) + ") exited with code " +
                       std::to_string(*popen->poll()) +
                       " before it started: its main() must call zmp::init(argc, argv) first");
}

}  // namespace zmp::detail
