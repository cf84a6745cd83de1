#include "process/bootstrap.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <mutex>
#include <typeinfo>
#include <unordered_map>

#include "process/child.hpp"
#include "travel/starter_build.hpp"
#include "runtime/identity.hpp"
#include "runtime/run.hpp"
#include "runtime/run_directory.hpp"
#include "travel/fd_passing.hpp"
#include "zmp/context.hpp"

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
        // A pair, not a structured binding: clang 14 cannot capture a binding in a lambda.
        const std::pair<const void*, Trampoline> resolved = resolve(b.target);
        auto args = std::make_shared<transport::Decoded>(transport::decode(b.args.data(), b.args.size()));
        ProcessAccess::set_local_target(*process,
                                        [resolved, args] { resolved.second(resolved.first, args->get(), nullptr); });
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
    ThisRun& run = this_run();
    ThisProcess& me = this_process();
    Bootstrap b;
    b.root_pid = run.root_pid();
    b.run_dir = run_directory().path();
    b.authkey.assign(reinterpret_cast<const char*>(run.authkey().data()), run.authkey().size());
    b.services = run.services();
    b.argv = run.argv();
    b.build_id = this_build_id();
    b.name = st.name;
    b.daemon = st.daemon;
    b.identity = st.identity;
    b.parent_pid = me.pid();
    b.parent_name = me.name();
    b.parent_main_thread = me.on_main_thread();
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
    out.fds.push_back(me.self_pidfd());
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
        note_starter_build(b.build_id);
        this_run().adopt(b.root_pid, key, b.services);
        this_run().set_argv(b.argv);
        run_directory().adopt(b.run_dir);
        auto take_fd = [&message](int index) {
            if (index < 0 || static_cast<std::size_t>(index) >= message.fds.size()) return -1;
            return std::exchange(message.fds[static_cast<std::size_t>(index)], -1);
        };
        this_process().set_inherited_parent_pidfd(take_fd(b.parent_pidfd));
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
        become_child(ChildIdentity{b.name, b.daemon, b.identity, b.parent_pid, b.parent_name, b.parent_main_thread},
                     static_cast<StartMethod>(b.method));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "zmp: a %s child could not start: %s\n",
                     b.method == static_cast<int>(StartMethod::forkserver) ? "forkserver" : "spawned", e.what());
        if (ready != nullptr) {  // the spawn parent waits: it raises with the reason
            const std::string reason = e.what();
            try {
                if (reason.size() > 1) ready->send(reason.data(), reason.size());
            } catch (const ProcessError&) {
            }
        }
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
    run_child(*process);
}

}  // namespace zmp::detail
