#include "runtime/hooks.hpp"

#include <array>
#include <cstdlib>
#include <mutex>
#include <vector>

#include "runtime/process_global.hpp"

namespace zmp::detail {
namespace {

constexpr int kStages = 3;

struct Hooks {
    std::mutex mutex;
    std::vector<std::function<void()>> start;
    std::vector<std::function<void()>> child;
    std::vector<std::function<void(int, char**)>> init;
    std::array<std::vector<std::function<void()>>, kStages> exit;
};

// The exit hooks run from atexit, after static destructors may have run: never destroyed.
Hooks& hooks() { return process_global<Hooks>(); }

}  // namespace

void arm_exit_hooks() {
    static const bool armed = (std::atexit(run_exit_hooks), true);
    (void)armed;
}

namespace {

using HookList = std::vector<std::function<void()>>;

void add_to(HookList Hooks::*list, std::function<void()> hook) {
    Hooks& h = hooks();
    std::lock_guard lock(h.mutex);
    (h.*list).push_back(std::move(hook));
}

// A copy, taken under the lock: a hook may register another while the list runs.
HookList copy_of(HookList Hooks::*list) {
    Hooks& h = hooks();
    std::lock_guard lock(h.mutex);
    return h.*list;
}

}  // namespace

void add_start_hook(std::function<void()> hook) { add_to(&Hooks::start, std::move(hook)); }

void run_start_hooks() {
    for (auto& hook : copy_of(&Hooks::start)) hook();
}

void add_child_hook(std::function<void()> hook) { add_to(&Hooks::child, std::move(hook)); }

void run_child_hooks() {
    for (auto& hook : copy_of(&Hooks::child)) {
        try {
            hook();
        } catch (...) {
        }
    }
}

void add_init_hook(std::function<void(int argc, char** argv)> hook) {
    Hooks& h = hooks();
    std::lock_guard lock(h.mutex);
    h.init.push_back(std::move(hook));
}

void run_init_hooks(int argc, char** argv) {
    std::vector<std::function<void(int, char**)>> init;
    {
        Hooks& h = hooks();
        std::lock_guard lock(h.mutex);
        init = h.init;
    }
    for (auto& hook : init) hook(argc, argv);
}

void add_exit_hook(std::function<void()> hook, ExitStage stage) {
    Hooks& h = hooks();
    std::lock_guard lock(h.mutex);
    h.exit[static_cast<std::size_t>(stage)].push_back(std::move(hook));
}

void run_exit_hooks() {
    Hooks& h = hooks();
    for (std::size_t stage = 0; stage < kStages; ++stage) {
        // Taken out before they run, so that each runs once even if exit is reached twice; a
        // hook that registers another in the same stage sees it run too.
        for (;;) {
            std::vector<std::function<void()>> batch;
            {
                std::lock_guard lock(h.mutex);
                batch.swap(h.exit[stage]);
            }
            if (batch.empty()) break;
            for (auto it = batch.rbegin(); it != batch.rend(); ++it) {
                try {
                    (*it)();
                } catch (...) {
                }
            }
        }
    }
}

}  // namespace zmp::detail
