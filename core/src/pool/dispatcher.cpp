#include "pool/dispatcher.hpp"

#include <poll.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>

#include "pipe/connection.hpp"
#include "pool/status_server.hpp"
#include "broker/status.hpp"
#include "pool/worker_events.hpp"
#include "pool/dispatcher_state.hpp"
#include "pool/frames.hpp"
#include "process/default_start_method.hpp"
#include "runtime/identity.hpp"
#include "runtime/private_fds.hpp"
#include "zmp/errors.hpp"
#include "zmp/exceptions.hpp"
#include "zmp/process.hpp"
#include "zmp/transport/codec.hpp"

namespace zmp::detail {

namespace {

using Clock = std::chrono::steady_clock;

// About this much work is kept in flight on each worker: enough to hide the round trip to the
// dispatcher, little enough that a slow worker never sits on a backlog.
constexpr double kTargetInFlightUs = 5000;
constexpr std::size_t kMaxWindow = 512;
constexpr int kMaxIdleDeaths = 5;

std::string worker_prefix(StartMethod method) {
    switch (method) {
        case StartMethod::spawn:
            return "SpawnPoolWorker-";
        case StartMethod::forkserver:
            return "ForkServerPoolWorker-";
        case StartMethod::fork:
            break;
    }
    return "ForkPoolWorker-";
}

}  // namespace

StatusPage::StatusPage(int fd) {
    void* page = ::mmap(nullptr, sizeof(std::uint64_t), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (page == MAP_FAILED) throw_os_error("mmap of a pool worker's status page", errno);
    word_ = static_cast<std::uint64_t*>(page);
}

StatusPage::StatusPage(StatusPage&& other) noexcept : word_(std::exchange(other.word_, nullptr)) {}

StatusPage& StatusPage::operator=(StatusPage&& other) noexcept {
    if (this != &other) {
        if (word_) ::munmap(word_, sizeof(std::uint64_t));
        word_ = std::exchange(other.word_, nullptr);
    }
    return *this;
}

StatusPage::~StatusPage() {
    if (word_) ::munmap(word_, sizeof(std::uint64_t));
}

std::pair<StatusPage, int> StatusPage::create() {
    const int fd = ::memfd_create("zmp-pool-worker", MFD_CLOEXEC);
    if (fd < 0) throw_os_error("memfd_create", errno);
    if (::ftruncate(fd, sizeof(std::uint64_t)) != 0) {
        const int error = errno;
        ::close(fd);
        throw_os_error("ftruncate", error);
    }
    return {StatusPage(fd), fd};
}

std::uint64_t StatusPage::running() const {
    return word_ ? std::atomic_ref<std::uint64_t>(*word_).load(std::memory_order_acquire) : 0;
}

void StatusPage::set_running(std::uint64_t id) {
    if (word_) std::atomic_ref<std::uint64_t>(*word_).store(id, std::memory_order_release);
}

PoolCore::PoolCore(const PoolSettings& settings, TaskFunction initializer, std::string initializer_args,
                   bool has_initializer, std::shared_ptr<OwnedFds> initializer_fds)
    : processes_(settings.processes == 0 ? (settings.bind.empty() ? cpu_count() : 0) : settings.processes),
      maxtasks_(settings.maxtasksperchild),
      method_(settings.context ? *settings.context : use_default_start_method()),
      max_retries_(settings.max_retries),
      creator_(this_process().pid()),
      init_fds_(std::move(initializer_fds)) {
    if (settings.processes < 0) throw ValueError("Number of processes must be at least 1");
    if (maxtasks_ && *maxtasks_ <= 0) throw ValueError("maxtasksperchild must be a positive int or None");
    if (settings.max_retries < 0) throw ValueError("max_retries must not be negative");
    if (has_initializer) {
        init_.present = true;
        init_.function = identify(initializer.function, initializer.trampoline);
        init_.args = std::move(initializer_args);
    }
    if (!settings.bind.empty()) open_join_point(settings);
}

PoolCore::~PoolCore() {
    if (status_.registration != 0) unregister_pool_status(status_.registration);
}

void PoolCore::start() {
    try {
        for (int i = 0; i < processes_; ++i) start_worker();
    } catch (...) {
        // As Python: the workers already started are stopped, and the error propagates.
        stop_workers();
        throw;
    }
    std::lock_guard lock(mutex_);
    started_ = true;
    dispatcher_ = std::thread([this] {
        run();
        std::lock_guard done(mutex_);
        status_.dispatcher_done = true;
        status_.answered.notify_all();
    });
    status_.registration = register_pool_status([weak = weak_from_this()]() -> std::optional<std::string> {
        const auto pool = weak.lock();
        return pool ? pool->status() : std::nullopt;
    });
}

void PoolCore::start_worker() {
    auto [mine, theirs] = private_channel_pair();
    auto worker = std::make_unique<Worker>();
    worker->name = worker_prefix(method_) + std::to_string(++workers_started_);
    Connection their_end = connection_from_channel(std::move(theirs));
    worker->process.emplace(
        get_context(method_).Process({.name = worker->name, .daemon = true}, pool_worker_main, their_end, init_));
    try {
        worker->process->start();
    } catch (...) {
        forget_private_fd(mine.fd());
        throw;
    }
    their_end.close();
    auto [page, page_fd] = StatusPage::create();
    worker->status = std::move(page);
    std::vector<int> setup_fds;
    if (init_fds_) setup_fds = init_fds_->fds();
    setup_fds.push_back(page_fd);
    try {
        const char setup[] = {static_cast<char>(0x91), 0x02};  // msgpack [2]
        mine.send(setup, sizeof setup, setup_fds);
    } catch (const OSError&) {
        // The worker died already; the dispatcher learns it from its pidfd.
    }
    ::close(page_fd);
    worker->sentinel = worker->process->sentinel();
    mine.set_max_message(kMaxPoolMessage);
    worker->outbox = std::make_unique<transport::Outbox>(mine.fd());
    worker->link = std::move(mine);
    log_worker_started(worker->name, worker->process->pid().value_or(0));
    workers_.push_back(std::move(worker));
}

void PoolCore::submit(Job job) {
    {
        std::lock_guard lock(mutex_);
        if (broken_) std::rethrow_exception(broken_);
        if (closed_ || terminate_requested_) throw ValueError("Pool not running");
        job.result->attach(shared_from_this());
        incoming_.push_back(std::move(job));
    }
    wake();
}

void PoolCore::wake() { wake_.notify(); }

void PoolCore::close() {
    {
        std::lock_guard lock(mutex_);
        closed_ = true;
    }
    wake();
}

void PoolCore::terminate() {
    {
        std::lock_guard lock(mutex_);
        terminate_requested_ = true;
        closed_ = true;
    }
    wake();
    join();
}

void PoolCore::join() {
    std::thread dispatcher;
    {
        std::lock_guard lock(mutex_);
        if (!closed_) throw ValueError("Pool is still running");
        if (joined_) return;
        joined_ = true;
        dispatcher = std::move(dispatcher_);
    }
    if (dispatcher.joinable()) dispatcher.join();
    unregister_pool_status(std::exchange(status_.registration, 0));
    callbacks_.stop();
}

void PoolCore::post_callback(std::function<void()> callback) { callbacks_.post(std::move(callback)); }

void PoolCore::withdraw() {
    withdrawals_ = true;
    wake();
}

std::uint32_t PoolCore::function_slot(const TaskFunction& function) {
    auto it = function_slots_.find(function.function);
    if (it != function_slots_.end()) return it->second;
    if (function_ids_.size() >= kMaxFunctionSlots) {
        throw ValueError("a pool runs at most " + std::to_string(kMaxFunctionSlots) + " distinct functions");
    }
    const auto slot = static_cast<std::uint32_t>(function_ids_.size());
    function_ids_.push_back(identify(function.function, function.trampoline));
    function_slots_.emplace(function.function, slot);
    return slot;
}

void PoolCore::accept_incoming() {
    std::deque<Job> jobs;
    {
        std::lock_guard lock(mutex_);
        jobs.swap(incoming_);
    }
    for (Job& job : jobs) {
        auto active = std::make_shared<ActiveJob>();
        active->job = std::move(job);
        try {
            active->slot = function_slot(active->job.function);
        } catch (...) {
            active->job.result->abort(std::current_exception());
            continue;
        }
        jobs_.push_back(std::move(active));
    }
}

std::optional<std::uint64_t> PoolCore::next_task() {
    if (!retries_.empty()) {
        const std::uint64_t id = retries_.front();
        retries_.pop_front();
        return id;
    }
    for (std::size_t i = 0; i < jobs_.size(); ++i) {
        std::shared_ptr<ActiveJob> job = jobs_[i];  // a copy: maybe_finish may drop it from jobs_
        if (!job->input_done && job->job.result->abandoned()) {
            job->input_done = true;  // nobody reads the stream: stop reading its input
            maybe_finish(job);
            return next_task();
        }
        if (job->input_done || job->finished || !job->job.result->wants_more(job->outstanding_items)) continue;
        if (!job->started) {
            if (!job->job.result->start()) {  // cancelled first: withdrawn, never run
                std::erase(jobs_, job);
                return next_task();
            }
            job->started = true;
        }
        EncodedChunk chunk;
        bool got = false;
        try {
            got = job->job.next_chunk(chunk);
        } catch (...) {
            // The input raised: earlier chunks still complete; the error takes its place.
            job->input_done = true;
            job->job.result->on_input_failed(std::current_exception(), job->items_read);
            maybe_finish(job);
            return next_task();
        }
        if (!got) {
            job->input_done = true;
            maybe_finish(job);
            return next_task();
        }
        const std::uint64_t id = next_task_id_++;
        job->outstanding_chunks += 1;
        job->outstanding_items += chunk.count;
        job->items_read += chunk.count;
        tasks_.emplace(id, Task{job, std::move(chunk), 0});
        return id;
    }
    return std::nullopt;
}

std::optional<std::uint64_t> PoolCore::next_local_task() {
    if (!local_only_.empty()) {
        const std::uint64_t id = local_only_.front();
        local_only_.pop_front();
        return id;
    }
    return next_task();
}

void PoolCore::keep_local(std::uint64_t id) {
    if (processes_ > 0) {
        local_only_.push_back(id);
        return;
    }
    finish_task(id,
                std::make_exception_ptr(ValueError(
                    "a pool task whose arguments hold Connections runs only on a local worker, and this pool has none "
                    "(processes = 0: only workers joined over tcp, which cannot receive this host's descriptors)")),
                nullptr);
}

void PoolCore::pump() {
    // Tasks are dealt one at a time, round robin from the least loaded worker, so that they
    // spread over the workers; each worker then gets its share in one message.
    struct Share {
        Worker* worker;
        std::size_t room;   // chunks it may still take
        std::size_t items;  // items it holds, with those dealt now
        std::vector<std::uint64_t> batch;
    };
    std::vector<Share> shares;
    for (auto& worker : workers_) {
        Worker& w = *worker;
        if (w.retiring || (!w.joined && !w.link.is_open()) || (w.joined && w.joined->gone)) continue;
        std::size_t room = w.window > w.in_flight.size() ? w.window - w.in_flight.size() : 0;
        if (maxtasks_) room = std::min(room, static_cast<std::size_t>(*maxtasks_) - w.assigned);
        if (room > 0) shares.push_back(Share{&w, room, w.in_flight_items, {}});
    }
    // The least loaded first: tasks often come one at a time (a map's chunks as they are made).
    std::stable_sort(shares.begin(), shares.end(), [](const Share& a, const Share& b) {
        return a.worker->in_flight.size() != b.worker->in_flight.size()
                   ? a.worker->in_flight.size() < b.worker->in_flight.size()
                   : a.items < b.items;
    });
    for (bool dealt = true, more = true; dealt && more;) {
        dealt = false;
        for (Share& s : shares) {
            if (s.batch.size() >= s.room) continue;
            // No more than about kTargetInFlightUs of work each, counted in items: chunks differ
            // in size from job to job.
            const bool has_work = !s.worker->in_flight.empty() || !s.batch.empty();
            if (has_work && static_cast<double>(s.items) * s.worker->item_us >= kTargetInFlightUs) continue;
            auto id = s.worker->joined ? next_task() : next_local_task();
            if (!id) {
                more = false;
                break;
            }
            if (s.worker->joined && tasks_.at(*id).chunk.fds) {
                keep_local(*id);  // its Connections are descriptors of this host
                dealt = true;
                continue;
            }
            s.batch.push_back(*id);
            s.items += tasks_.at(*id).chunk.count;
            dealt = true;
        }
    }
    for (Share& s : shares)
        if (!s.batch.empty()) (void)send_batch(*s.worker, s.batch);
}

bool PoolCore::send_batch(Worker& w, std::vector<std::uint64_t>& batch) {
    if (w.joined) {
        // What cannot run there fails at once, and only itself.
        std::erase_if(batch, [&](std::uint64_t id) {
            std::exception_ptr why = cannot_run_joined(w, id);
            if (why) finish_task(id, why, nullptr);
            return why != nullptr;
        });
    }
    for (std::uint64_t id : batch) {
        w.in_flight.push_back(id);
        w.in_flight_items += tasks_.at(id).chunk.count;
    }
    w.assigned += batch.size();
    if (maxtasks_ && w.assigned >= static_cast<std::size_t>(*maxtasks_)) {
        w.retiring = true;
        w.renew = true;  // a joined one is asked to come back as a fresh process
    }
    // Tasks share a message, except one that carries descriptors: it goes alone, so that the
    // worker knows whose they are.
    std::vector<std::uint64_t> plain;
    for (std::uint64_t id : batch) {
        if (tasks_.at(id).chunk.fds) {
            if (!plain.empty() && !send_message(w, plain)) return false;
            plain.clear();
            if (!send_message(w, std::span<const std::uint64_t>(&id, 1))) return false;
        } else {
            plain.push_back(id);
        }
    }
    return plain.empty() || send_message(w, plain);
}

bool PoolCore::send_message(Worker& w, std::span<const std::uint64_t> ids) {
    msgpack::sbuffer buffer;
    msgpack::packer<msgpack::sbuffer> out(buffer);
    std::vector<std::uint32_t> new_slots;
    for (std::uint64_t id : ids) {
        const std::uint32_t slot = tasks_.at(id).job->slot;
        const bool known = slot < w.defined.size() && w.defined[slot];
        if (!known && std::find(new_slots.begin(), new_slots.end(), slot) == new_slots.end()) new_slots.push_back(slot);
    }
    out.pack_array(3);
    out.pack(0);
    out.pack_array(static_cast<std::uint32_t>(new_slots.size()));
    for (std::uint32_t slot : new_slots) {
        out.pack_array(2);
        out.pack(slot);
        out.pack(function_ids_[slot]);
    }
    out.pack_array(static_cast<std::uint32_t>(ids.size()));
    std::span<const int> fds;
    for (std::uint64_t id : ids) {
        const Task& task = tasks_.at(id);
        out.pack_array(3);
        out.pack(id);
        out.pack(task.job->slot);
        buffer.write(task.chunk.args.data(), task.chunk.args.size());  // already msgpack
        if (task.chunk.fds) fds = task.chunk.fds->fds();
    }
    if (buffer.size() > kMaxPoolMessage) {
        // Over the link's limit: halves go separately; a single task that does not fit fails.
        if (ids.size() > 1) {
            const std::size_t half = ids.size() / 2;
            return send_message(w, ids.first(half)) && send_message(w, ids.subspan(half));
        }
        const std::uint64_t id = ids.front();
        std::erase(w.in_flight, id);
        w.in_flight_items -= std::min(w.in_flight_items, tasks_.at(id).chunk.count);
        finish_task(id,
                    std::make_exception_ptr(ValueError(
                        "a pool task's arguments take " + std::to_string(tasks_.at(id).chunk.args.size()) +
                        " bytes, beyond the pool's limit of " + std::to_string(kMaxPoolMessage) + " bytes a message")),
                    nullptr);
        return true;
    }
    for (std::uint32_t slot : new_slots) {
        if (w.defined.size() <= slot) w.defined.resize(slot + 1, 0);
        w.defined[slot] = 1;
    }
    if (w.joined) {
        // If this message was to carry the task first in line, the worker never had it: no task
        // was running there when the connection turned out to be gone.
        const bool first_sent_before = w.in_flight.front() != ids.front();
        if (send_to_joined(w, buffer.data(), buffer.size())) return true;
        joined_lost(w, "lost its connection", false, first_sent_before);
        return false;
    }
    try {
        iovec part{buffer.data(), buffer.size()};
        w.outbox->send(std::span<const iovec>(&part, 1), fds);
    } catch (const OSError&) {
        // The worker is gone; its pidfd will say so, and its tasks are handled then.
        return false;
    }
    return true;
}

bool PoolCore::read_from(Worker& w) {
    bool got = false;
    try {
        got = w.link.recv(incoming_message_);
    } catch (const ProtocolError& e) {
        drop_worker(w, "a message that breaks the channel's framing (" + std::string(e.what()) + ")");
        return false;
    } catch (const ProcessError&) {
        got = false;  // a broken stream from a worker: treat as its end
    }
    if (!got) return false;
    return handle_message(w, incoming_message_.data.get(), incoming_message_.size);
}

bool PoolCore::handle_message(Worker& w, const char* data, std::size_t size) {
    try {
        transport::Decoded decoded = transport::decode(data, size);
        const WorkerMessage message = read_worker_message(decoded.get());
        const int kind = message.kind;
        if ((kind == kJoinPing || kind == kJoinHello) && w.joined) return true;  // it is known already
        if (kind == 1) {
            const ErrorRecord& record = message.initializer_error;
            if (w.joined) {
                // One host's failing initializer costs that host, not the pool.
                joined_lost(w, "its initializer failed: " + record.type + ": " + record.message, true);
                return false;
            }
            break_pool(std::make_exception_ptr(BrokenPool("the pool's initializer failed in " + record.origin +
                                                          " (pid " + std::to_string(record.pid) + "): " + record.type +
                                                          ": " + record.message)));
            return true;
        }
        if (kind != 0) throw ProtocolError("a message of an unknown kind");
        handle_results(w, *message.results, message.busy_us);
    } catch (const ProcessError& e) {
        drop_worker(w, e.what());
        return false;
    }
    return true;
}

pid_t PoolCore::worker_pid(const Worker& w) const {
    if (w.joined) return static_cast<pid_t>(w.joined->pid);
    return w.process->pid().value_or(0);
}

std::exception_ptr PoolCore::protocol_error(const Worker& w, const std::string& what) const {
    const pid_t pid = worker_pid(w);
    return std::make_exception_ptr(
        ProtocolError("pool worker " + w.name + " (pid " + std::to_string(pid) + ") sent " + what));
}

void PoolCore::drop_worker(Worker& w, const std::string& what) {
    if (w.dropped) return;
    w.dropped = protocol_error(w, what);
    // A joined worker runs its tasks in order: the first it holds is the one it was running.
    w.running_when_dropped = w.joined ? (w.in_flight.empty() ? 0 : w.in_flight.front()) : w.status.running();
}

void PoolCore::handle_results(Worker& w, const msgpack::object& results, std::uint64_t busy_us) {
    const std::size_t n = results.via.array.size;  // an array: read_worker_message() checked
    std::size_t items = 0;                         // in the chunks these results are for
    for (std::size_t i = 0; i < n; ++i) {
        const WorkerResult result = read_result(results.via.array.ptr[i]);
        const std::uint64_t id = result.id;
        // Only a task this worker holds counts: anything else is late or a duplicate.
        auto held = std::find(w.in_flight.begin(), w.in_flight.end(), id);
        if (held == w.in_flight.end()) continue;
        w.in_flight.erase(held);
        ++w.tasks_done;
        auto task = tasks_.find(id);
        if (task == tasks_.end()) continue;
        const std::size_t count = task->second.chunk.count;
        items += count;
        w.in_flight_items -= std::min(w.in_flight_items, count);
        idle_deaths_ = 0;
        if (result.status == WorkerResult::Status::bad_status) {
            finish_task(id, protocol_error(w, "a result whose status is not a boolean"), nullptr);
        } else if (result.status == WorkerResult::Status::values) {
            // The values go where the task's items are: exactly as many as it has.
            const msgpack::object& payload = *result.values;
            if (payload.type != msgpack::type::ARRAY || payload.via.array.size != count) {
                const std::string got = payload.type == msgpack::type::ARRAY
                                            ? std::to_string(payload.via.array.size) + " values"
                                            : std::string("something that is not an array");
                finish_task(id, protocol_error(w, got + " for a task of " + std::to_string(count) + " items"), nullptr);
            } else {
                finish_task(id, nullptr, &payload);
            }
        } else {
            ++w.failures;
            finish_task(id,
                        result.error ? exception_from_record(*result.error)
                                     : protocol_error(w, "an error record that does not decode"),
                        nullptr);
        }
    }
    if (items > 0) {
        // How long an item takes sizes the worker's share of the work (pump()).
        const double per_item = static_cast<double>(busy_us) / static_cast<double>(items);
        w.item_us = w.item_us == 0 ? per_item : 0.7 * w.item_us + 0.3 * per_item;
        w.window = kMaxWindow;
    }
    retire_if_done(w);
}

void PoolCore::finish_task(std::uint64_t id, std::exception_ptr error, const msgpack::object* values) {
    auto it = tasks_.find(id);
    if (it == tasks_.end()) return;
    std::shared_ptr<ActiveJob> job = it->second.job;
    const EncodedChunk& chunk = it->second.chunk;
    if (!job->finished) {
        if (values != nullptr) {
            try {
                job->job.result->on_results(chunk.first, *values);
            } catch (...) {
                job->job.result->on_chunk_failed(chunk.first, chunk.count, std::current_exception());
            }
        } else {
            job->job.result->on_chunk_failed(chunk.first, chunk.count, error);
        }
    }
    job->outstanding_chunks -= 1;
    job->outstanding_items -= chunk.count;
    tasks_.erase(it);
    maybe_finish(job);
}

void PoolCore::maybe_finish(const std::shared_ptr<ActiveJob>& job) {
    if (!job->input_done || job->outstanding_chunks > 0) return;
    if (!job->finished) {
        job->finished = true;
        job->job.result->on_all_done();
    }
    std::erase(jobs_, job);
}

void PoolCore::retire_if_done(Worker& w) {
    if (w.joined) {
        if (w.retiring && w.in_flight.empty() && !w.joined->gone) retire_joined(w);
        return;
    }
    if (w.retiring && w.in_flight.empty() && w.link.is_open()) {
        // End of stream tells the worker to exit; its pidfd reports when it has.
        w.outbox->flush();
        forget_private_fd(w.link.fd());
        w.outbox.reset();
        w.link.close();
    }
}

void PoolCore::worker_ended(std::size_t index) {
    Worker& w = *workers_[index];
    // Results it sent before it ended still count (unless it was dropped: its stream is not
    // trusted any more).
    while (!w.dropped && w.link.is_open() && w.link.poll(0)) {
        if (!read_from(w)) break;
    }
    if (w.link.is_open()) {
        forget_private_fd(w.link.fd());
        w.outbox.reset();
        w.link.close();
    }
    // Its link ends a moment before its pidfd says it has exited; one that lives on is ended,
    // and one that was dropped at once.
    if (w.dropped || !w.process->join(std::chrono::seconds(1))) {
        w.process->kill();
        w.process->join();
    }
    const int exitcode = w.process->exitcode().value_or(-1);
    const bool expected = w.retiring;
    std::deque<std::uint64_t> lost;
    lost.swap(w.in_flight);
    w.in_flight_items = 0;
    const std::uint64_t running = w.dropped ? w.running_when_dropped : w.status.running();
    const std::exception_ptr dropped = w.dropped;
    const std::string name = w.name;
    const pid_t pid = w.process->pid().value_or(0);
    workers_.erase(workers_.begin() + static_cast<std::ptrdiff_t>(index));
    log_worker_ended(name, pid, exitcode, expected, running != 0);
    status_.note_ended(name, pid, describe_exit(exitcode), expected);

    reclaim_tasks(lost, running, dropped, std::make_exception_ptr(WorkerLost(name, pid, exitcode)), name);
    if (running == 0 && !expected) ++idle_deaths_;

    bool replace;
    {
        std::lock_guard lock(mutex_);
        replace =
            !terminate_requested_ && !broken_ && !(closed_ && jobs_.empty() && retries_.empty() && local_only_.empty());
    }
    if (idle_deaths_ >= kMaxIdleDeaths) {
        break_pool(std::make_exception_ptr(BrokenPool("pool workers keep dying before they run anything (last: " +
                                                      name + ", exit code " + std::to_string(exitcode) + ")")));
        return;
    }
    if (replace) {
        try {
            start_worker();
            log_worker_replaced(name, workers_.back()->name, workers_.back()->process->pid().value_or(0));
            status_.note_replaced(workers_.back()->name);
        } catch (...) {
            break_pool(std::current_exception());
        }
    }
}

void PoolCore::reclaim_tasks(std::deque<std::uint64_t>& lost, std::uint64_t running, const std::exception_ptr& dropped,
                             const std::exception_ptr& lost_error, const std::string& worker) {
    // Only the task it was running died with it; the others go back to the queue, first in line.
    for (auto it = lost.rbegin(); it != lost.rend(); ++it) {
        auto entry = tasks_.find(*it);
        if (entry == tasks_.end()) continue;
        Task& task = entry->second;
        if (*it != running) {
            retries_.push_front(*it);
        } else if (dropped) {
            finish_task(*it, dropped, nullptr);  // what it was running when it broke the protocol
        } else if (task.attempts < max_retries_ && !task.job->finished) {
            ++task.attempts;
            retries_.push_front(*it);
            log_task_retried(*it, task.attempts + 1, max_retries_, worker);
        } else {
            finish_task(*it, lost_error, nullptr);
        }
    }
}

void PoolCore::break_pool(std::exception_ptr error) {
    {
        std::lock_guard lock(mutex_);
        if (broken_) return;
        broken_ = error;
    }
    abort_everything(error);
    for (auto& w : workers_) {
        w->retiring = true;
        w->renew = false;
    }
}

void PoolCore::abort_everything(std::exception_ptr error) {
    for (auto& job : jobs_) {
        job->finished = true;
        job->job.result->abort(error);
    }
    jobs_.clear();
    std::deque<Job> queued;
    {
        std::lock_guard lock(mutex_);
        queued.swap(incoming_);
    }
    for (Job& job : queued) job.result->abort(error);
    retries_.clear();
    local_only_.clear();
    tasks_.clear();
    for (auto& w : workers_) {
        w->in_flight.clear();
        w->in_flight_items = 0;
    }
}

void PoolCore::stop_workers() {
    for (auto& w : workers_) {
        if (w->joined) {
            w->renew = false;
            if (!w->joined->gone) retire_joined(*w);
            continue;
        }
        if (w->link.is_open()) {
            forget_private_fd(w->link.fd());
            w->outbox.reset();
            w->link.close();
        }
        if (w->process->is_alive()) w->process->terminate();
    }
    for (auto& w : workers_) {
        if (w->joined) continue;
        if (!w->process->join(std::chrono::seconds(1))) {
            w->process->kill();
            w->process->join();
        }
    }
    workers_.clear();
    joined_count_ = 0;
}

std::optional<std::string> PoolCore::status() {
    std::unique_lock lock(mutex_);
    if (!started_ || status_.dispatcher_done) return std::nullopt;
    const std::uint64_t asked_at = status_.serial;
    status_.wanted = true;
    wake_.notify();
    if (!status_.answered.wait_for(lock, kPoolStatusWait,
                                   [&] { return status_.serial != asked_at || status_.dispatcher_done; }) ||
        status_.serial == asked_at) {
        return std::nullopt;
    }
    return status_.packed;
}

// The dispatcher's answer to status(): its own books, packed (pool/pool_status.hpp).
void PoolCore::publish_status() {
    std::string packed = pack_status();
    std::lock_guard lock(mutex_);
    status_.packed = std::move(packed);
    status_.wanted = false;
    ++status_.serial;
    status_.answered.notify_all();
}

std::string PoolCore::pack_status() {
    msgpack::sbuffer out;
    msgpack::packer<msgpack::sbuffer> pk(out);
    bool closed;
    std::size_t queued;
    {
        std::lock_guard lock(mutex_);
        closed = closed_;
        queued = incoming_.size();
    }
    pk.pack_map(10);
    pk.pack("creator"), pk.pack(static_cast<std::int64_t>(creator_));
    pk.pack("method"), pk.pack(std::string(to_string(method_)));
    pk.pack("processes"), pk.pack(processes_);
    pk.pack("max_retries"), pk.pack(max_retries_);
    pk.pack("state"), pk.pack(closed ? "closed" : "running");
    pk.pack("queued"), pk.pack(static_cast<std::uint64_t>(retries_.size() + local_only_.size() + queued));
    pk.pack("jobs"), pk.pack(static_cast<std::uint64_t>(jobs_.size()));
    pk.pack("restarts"), pk.pack(status_.restarts);
    pk.pack("workers");
    pk.pack_array(static_cast<std::uint32_t>(workers_.size()));
    const std::string host = broker::this_host_name();
    for (const auto& w : workers_) {
        const std::uint64_t running = w->status.running();
        pk.pack_map(8);
        pk.pack("name"), pk.pack(w->name);
        pk.pack("pid"), pk.pack(static_cast<std::int64_t>(worker_pid(*w)));
        pk.pack("host"), pk.pack(w->joined ? w->joined->host : host);
        pk.pack("state"), pk.pack(w->retiring ? "retiring" : running != 0 || !w->in_flight.empty() ? "busy" : "idle");
        pk.pack("tasks_done"), pk.pack(w->tasks_done);
        pk.pack("failures"), pk.pack(w->failures);
        pk.pack("in_flight"), pk.pack(static_cast<std::uint64_t>(w->in_flight.size()));
        pk.pack("running"), pk.pack(running);
    }
    pk.pack("ended");
    pk.pack_array(static_cast<std::uint32_t>(status_.ended.size()));
    for (const auto& e : status_.ended) {
        pk.pack_map(5);
        pk.pack("name"), pk.pack(e.name);
        pk.pack("pid"), pk.pack(static_cast<std::int64_t>(e.pid));
        pk.pack("exit"), pk.pack(e.exit);
        pk.pack("retired"), pk.pack(e.retired);
        pk.pack("replaced_by"), pk.pack(e.replaced_by);
    }
    return std::string(out.data(), out.size());
}

void PoolCore::run() {
    std::vector<pollfd> fds;
    for (;;) {
        bool terminate_now, closed, status_wanted;
        {
            std::lock_guard lock(mutex_);
            terminate_now = terminate_requested_;
            closed = closed_;
            status_wanted = status_.wanted;
        }
        if (status_wanted) publish_status();
        if (terminate_now) {
            abort_everything(std::make_exception_ptr(PoolTerminated("the pool was terminated")));
            stop_workers();
            return;
        }
        accept_incoming();
        if (withdrawals_.exchange(false)) {
            // Jobs cancelled before they started: dropped with their inputs, never run.
            std::erase_if(jobs_, [](const auto& job) { return !job->started && job->job.result->cancelled(); });
        }
        pump();
        // Joined workers: what they sent, pings when due, and those lost or retired go.
        bool joined_traffic = false;
        int timeout = -1;
        if (join_) {
            joined_traffic = serve_join_point();
            timeout = ping_joined();
            sweep_joined();
        }
        if (closed && jobs_.empty() && retries_.empty() && local_only_.empty()) {
            bool nothing_left;
            {
                std::lock_guard lock(mutex_);
                nothing_left = incoming_.empty();
            }
            if (nothing_left) {
                // Closed and done: end every worker's link; the loop ends once all have exited.
                for (auto& w : workers_) {
                    w->retiring = true;
                    w->renew = false;  // nothing is left to do: joined workers leave for good
                    retire_if_done(*w);
                }
                sweep_joined();
                if (workers_.empty()) return;
            }
        }

        fds.clear();
        fds.push_back({wake_.fd(), POLLIN, 0});
        for (auto& w : workers_) {
            if (w->joined) {  // served through the join point's socket
                fds.push_back({-1, 0, 0});
                fds.push_back({-1, 0, 0});
                continue;
            }
            short events = 0;
            if (w->link.is_open()) {
                events = POLLIN;
                if (w->outbox && !w->outbox->empty()) events |= POLLOUT;
            }
            fds.push_back({w->link.is_open() ? w->link.fd() : -1, events, 0});
            fds.push_back({w->sentinel, POLLIN, 0});
        }
        if (join_) {
            fds.push_back({join_point_fd(), POLLIN, 0});
            // Its fd only says that something changed: look again at once while anything waits.
            if (joined_traffic || join_point_readable()) timeout = 0;
        }
        if (::poll(fds.data(), fds.size(), timeout) < 0) {
            if (errno == EINTR) continue;
            throw_os_error("poll in the pool dispatcher", errno);
        }
        if (fds[0].revents != 0) wake_.drain();
        // Walk the workers from the back, so that an ended one can be removed in place.
        for (std::size_t i = workers_.size(); i-- > 0;) {
            const pollfd& link = fds[1 + 2 * i];
            const pollfd& sentinel = fds[2 + 2 * i];
            Worker& w = *workers_[i];
            if (w.joined) continue;
            bool ended = sentinel.revents != 0;
            if (!ended && link.fd >= 0 && (link.revents & POLLOUT) && w.outbox) {
                try {
                    w.outbox->flush();
                } catch (const OSError&) {
                    ended = true;
                }
            }
            if (!ended && link.fd >= 0 && (link.revents & (POLLIN | POLLHUP | POLLERR))) {
                // Take everything the worker has sent so far.
                do {
                    if (!read_from(w)) {
                        ended = true;
                        break;
                    }
                } while (w.link.is_open() && w.link.poll(0));
            }
            if (ended) worker_ended(i);
        }
    }
}

}  // namespace zmp::detail
