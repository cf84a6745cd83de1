// zmp::wait (zmp/connection.hpp): Python's multiprocessing.connection.wait over poll(2).

#include <poll.h>

#include <cerrno>
#include <vector>

#include "zmp/connection.hpp"
#include "zmp/detail/deadline.hpp"

namespace zmp {

std::vector<Waitable> wait(const std::vector<Waitable>& objects, Timeout timeout) {
    if (timeout && timeout->count() < 0) timeout = Seconds(0);
    const auto deadline = detail::Deadline::after(timeout);
    std::vector<pollfd> fds(objects.size());
    for (;;) {
        for (std::size_t i = 0; i < objects.size(); ++i) {
            const int* fd = std::get_if<int>(&objects[i]);
            fds[i] = pollfd{fd ? *fd : std::get<Connection>(objects[i]).fileno(), POLLIN, 0};
        }
        const int rc = ::poll(fds.data(), fds.size(), deadline.poll_ms());
        if (rc < 0) {
            if (errno == EINTR) continue;
            throw_os_error("wait: poll", errno);
        }
        std::vector<Waitable> ready;
        for (std::size_t i = 0; i < objects.size(); ++i) {
            if (fds[i].revents == 0) continue;
            if (fds[i].revents & POLLNVAL)
                throw OSError("wait: descriptor " + std::to_string(fds[i].fd) + " is not open", EBADF);
            // A Connection's descriptor may be readable while another process took the message:
            // its own poll() tells.
            const Connection* conn = std::get_if<Connection>(&objects[i]);
            if (conn == nullptr || conn->poll(Seconds(0))) ready.push_back(objects[i]);
        }
        if (!ready.empty() || deadline.passed()) return ready;
    }
}

std::vector<Waitable> wait(std::initializer_list<Waitable> objects, Timeout timeout) {
    return wait(std::vector<Waitable>(objects), timeout);
}

std::vector<Connection> wait(const std::vector<Connection>& connections, Timeout timeout) {
    std::vector<Connection> ready;
    for (Waitable& w : wait(std::vector<Waitable>(connections.begin(), connections.end()), timeout))
        ready.push_back(std::get<Connection>(std::move(w)));
    return ready;
}

}  // namespace zmp
