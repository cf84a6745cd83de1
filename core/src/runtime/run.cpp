#include "runtime/run.hpp"

#include <sys/random.h>
#include <unistd.h>

#include <cerrno>

#include "runtime/hooks.hpp"
#include "runtime/process_global.hpp"
#include "runtime/startup.hpp"
#include "zmp/errors.hpp"

namespace zmp::detail {

ThisRun& this_run() { return process_global<ThisRun>(); }

ThisRun::ThisRun() : root_pid_(::getpid()) {
    require_init();
    arm_exit_hooks();
    std::size_t filled = 0;
    while (filled < authkey_.size()) {
        ssize_t n = ::getrandom(authkey_.data() + filled, authkey_.size() - filled, 0);
        if (n > 0)
            filled += static_cast<std::size_t>(n);
        else if (errno != EINTR)
            throw_os_error("getrandom", errno);
    }
}

bool ThisRun::is_root() const { return root_pid_ == ::getpid(); }

void ThisRun::set_service(const std::string& key, std::string value) {
    std::lock_guard lock(mutex_);
    services_[key] = std::move(value);
}

std::string ThisRun::service(const std::string& key) const {
    std::lock_guard lock(mutex_);
    auto it = services_.find(key);
    return it == services_.end() ? std::string() : it->second;
}

std::map<std::string, std::string> ThisRun::services() const {
    std::lock_guard lock(mutex_);
    return services_;
}

void ThisRun::adopt(pid_t root_pid, const Authkey& authkey, std::map<std::string, std::string> services) {
    std::lock_guard lock(mutex_);
    root_pid_ = root_pid;
    authkey_ = authkey;
    services_ = std::move(services);
}

}  // namespace zmp::detail
