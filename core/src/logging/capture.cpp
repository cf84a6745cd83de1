// capture_output(): a child's stdout and stderr, forwarded to the root's handlers line by line.
//
// File descriptors 1 and 2 become the write ends of two pipes, so that everything written to
// them is caught — stdio, iostreams, write(2), programs the process runs — not only what goes
// through a C++ stream. A thread of the child reads the pipes, cuts lines, and sends each as a
// record (origin captured_stdout or captured_stderr) through the process's link to the root. At
// exit, or on capture_output(false), the process's own descriptors come back, the thread reads
// what is left, sends a last line that had no newline, and the records are flushed to the root.
// A line that cannot be sent (the root is gone) is written, as it was, to the original stream.

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio_ext.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <mutex>
#include <string>
#include <thread>

#include "base/fork.hpp"
#include "base/wake_fd.hpp"
#include "logging/carrier.hpp"
#include "base/log.hpp"
#include "runtime/hooks.hpp"
#include "runtime/run.hpp"
#include "runtime/stdio.hpp"
#include "zmp/errors.hpp"
#include "zmp/logging.hpp"

namespace zmp::detail {
namespace {

// A line longer than this is sent in pieces of this size.
constexpr std::size_t kMaxLine = 64 * 1024;

// One captured stream: fd 1 or fd 2 of this process.
struct Stream {
    int target = 0;     // 1 or 2
    int original = -1;  // the process's own descriptor, kept aside; -1 if it had none
    int read_end = -1;
    std::string partial;  // the start of a line whose newline has not come yet
    bool open = true;

    void forward(std::string_view line) const {
        const bool out = target == 1;
        const LogLevel level = out ? LogLevel::info : LogLevel::warning;
        const LogOrigin origin = out ? LogOrigin::captured_stdout : LogOrigin::captured_stderr;
        if (!deliver(level, origin, line, {}, 0)) {
            if (original >= 0) write_text(original, std::string(line) + "\n");
        }
    }

    // Reads what the pipe holds now; forwards each complete line. False at end of stream.
    bool read_available() {
        std::array<char, 16384> buffer;
        for (;;) {
            const ssize_t n = ::read(read_end, buffer.data(), buffer.size());
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) return true;  // EAGAIN: nothing more for now
            if (n == 0) return false;
            partial.append(buffer.data(), static_cast<std::size_t>(n));
            std::size_t start = 0;
            for (std::size_t nl; (nl = partial.find('\n', start)) != std::string::npos; start = nl + 1) {
                forward(std::string_view(partial).substr(start, nl - start));
            }
            partial.erase(0, start);
            while (partial.size() >= kMaxLine) {
                forward(std::string_view(partial).substr(0, kMaxLine));
                partial.erase(0, kMaxLine);
            }
        }
    }

    void finish() {
        if (!partial.empty()) forward(partial);
        partial.clear();
        open = false;
    }
};

class Capture {
public:
    explicit Capture(std::uint64_t generation) : generation_(generation) {}
    std::uint64_t generation() const { return generation_; }
    bool active() const { return active_; }

    void start() {
        flush_std_streams();  // what was written before capture goes where it was going
        // stdout on a pipe would be fully buffered: line by line, lines arrive as they are
        // written, in order with stderr's and with what programs this one runs write.
        stdout_line_buffered_ = __flbf(stdout) != 0;
        ::setvbuf(stdout, nullptr, _IOLBF, BUFSIZ);
        std::array<int, 2> out{-1, -1}, err{-1, -1};
        if (::pipe2(out.data(), O_CLOEXEC) != 0) throw_os_error("capture_output: pipe2", errno);
        if (::pipe2(err.data(), O_CLOEXEC) != 0) {
            const int code = errno;
            ::close(out[0]), ::close(out[1]);
            throw_os_error("capture_output: pipe2", code);
        }
        streams_[0] = Stream{1, ::fcntl(1, F_DUPFD_CLOEXEC, 3), out[0]};
        streams_[1] = Stream{2, ::fcntl(2, F_DUPFD_CLOEXEC, 3), err[0]};
        for (Stream& s : streams_) ::fcntl(s.read_end, F_SETFL, O_NONBLOCK);
        ::dup2(out[1], 1);  // without O_CLOEXEC: programs this process runs write there too
        ::dup2(err[1], 2);
        ::close(out[1]);
        ::close(err[1]);
        // The thread takes no signals: they are the program's, for its own threads.
        sigset_t all, previous;
        ::sigfillset(&all);
        ::pthread_sigmask(SIG_SETMASK, &all, &previous);
        reader_ = std::thread([this] { read_loop(); });
        ::pthread_sigmask(SIG_SETMASK, &previous, nullptr);
        active_ = true;
    }

    void stop() {
        flush_std_streams();
        // Giving fds 1 and 2 back closes this process's write ends of the pipes.
        for (Stream& s : streams_) {
            if (s.original >= 0) {
                ::dup2(s.original, s.target);
            } else {
                ::close(s.target);
            }
        }
        wake_.notify();
        reader_.join();
        wake_.drain();  // a later capture_output() starts a reader that must not stop at once
        for (Stream& s : streams_) {
            ::close(s.read_end);
            if (s.original >= 0) ::close(s.original);
            s = Stream{};
        }
        if (!stdout_line_buffered_) ::setvbuf(stdout, nullptr, _IOFBF, BUFSIZ);
        active_ = false;
        flush_link();
    }

private:
    // Reads both pipes until told to stop; then takes what they still hold (a process this one
    // started may keep a write end open: its later lines are not waited for).
    void read_loop() {
        for (;;) {
            std::array<pollfd, 3> fds{pollfd{streams_[0].open ? streams_[0].read_end : -1, POLLIN, 0},
                                      pollfd{streams_[1].open ? streams_[1].read_end : -1, POLLIN, 0},
                                      pollfd{wake_.fd(), POLLIN, 0}};
            if (::poll(fds.data(), fds.size(), -1) < 0) {
                if (errno == EINTR) continue;
                break;
            }
            const bool stopping = fds[2].revents != 0;
            for (std::size_t i = 0; i < 2; ++i) {
                Stream& s = streams_[i];
                if (s.open && (fds[i].revents != 0 || stopping) && !s.read_available()) s.finish();
            }
            if (stopping) break;
        }
        for (Stream& s : streams_)
            if (s.open) s.finish();
    }

    const std::uint64_t generation_;
    bool active_ = false;
    bool stdout_line_buffered_ = false;
    std::array<Stream, 2> streams_;
    WakeFd wake_;
    std::thread reader_;
};

// This process's capture; a forked child's copy of its parent's is left alone (never destroyed).
std::mutex capture_mutex;
Capture* capture = nullptr;

void lock_capture() { capture_mutex.lock(); }
void unlock_capture() { capture_mutex.unlock(); }

void stop_at_exit() {
    std::lock_guard lock(capture_mutex);
    if (capture != nullptr && capture->generation() == fork_generation() && capture->active()) capture->stop();
}

// capture_children_output(): the parent's wish travels as a service, which every child it starts
// (and their children) inherits; each child acts on it before its target runs.
constexpr const char* kCaptureService = "log.capture_children";

void capture_if_asked() {
    if (this_run().service(kCaptureService) != "1") return;
    try {
        capture_output(true);
    } catch (const std::exception& e) {
        write_text(2, std::string("zmp: this child cannot capture its output: ") + e.what() + "\n");
    }
}

[[maybe_unused]] const bool child_hook_installed = (add_child_hook(capture_if_asked), true);

}  // namespace
}  // namespace zmp::detail

namespace zmp {

void capture_output(bool on) {
    using namespace detail;
    if (in_root_process()) {
        throw ValueError(
            "capture_output() is for child processes: the root's own handlers write to its stdout and stderr");
    }
    static const bool fork_handlers = [] {
        on_fork(ForkLayer::service, {lock_capture, unlock_capture, unlock_capture});
        return true;
    }();
    (void)fork_handlers;
    std::lock_guard lock(capture_mutex);
    const std::uint64_t generation = fork_generation();
    if (capture == nullptr || capture->generation() != generation) {
        if (!on) return;
        // The exit hook below must run while this process's queue feeder still delivers.
        (void)prime_link();
        capture = new Capture(generation);
        add_exit_hook(stop_at_exit);
    }
    if (on && !capture->active()) {
        capture->start();
    } else if (!on && capture->active()) {
        capture->stop();
    }
}

void capture_children_output(bool on) {
    (void)detail::child_hook_installed;
    detail::this_run().set_service(detail::kCaptureService, on ? "1" : "");
}

}  // namespace zmp
