#include "broker/events.hpp"

#include <string>

#include "base/log.hpp"

namespace zmp::detail::broker {

const char* kind_name(Kind kind) {
    switch (kind) {
        case Kind::lock:
            return "Lock";
        case Kind::rlock:
            return "RLock";
        case Kind::semaphore:
            return "Semaphore";
        case Kind::bounded_semaphore:
            return "BoundedSemaphore";
        case Kind::event:
            return "Event";
        case Kind::condition:
            return "Condition";
        case Kind::barrier:
            return "Barrier";
        case Kind::queue:
            return "Queue";
        case Kind::joinable_queue:
            return "JoinableQueue";
        case Kind::manager:
            return "Manager";
        case Kind::manager_dict:
            return "DictProxy";
        case Kind::manager_list:
            return "ListProxy";
        case Kind::manager_namespace:
            return "Namespace";
        case Kind::manager_value:
            return "ValueProxy";
    }
    return "object";
}

void log_lock_freed(Kind kind, std::uint64_t id, pid_t holder) {
    if (!log_enabled(LogLevel::warning)) return;
    log_record(LogLevel::warning, std::string(kind_name(kind)) + " " + std::to_string(id) + " freed: its holder (pid " +
                                      std::to_string(holder) + ") died holding it");
}

void log_items_given_back(Kind kind, std::uint64_t id, std::uint32_t count, pid_t consumer) {
    if (count == 0 || !log_enabled(LogLevel::info)) return;
    log_record(LogLevel::info, std::to_string(count) + (count == 1 ? " item" : " items") + " given back to " +
                                   kind_name(kind) + " " + std::to_string(id) + ": its consumer (pid " +
                                   std::to_string(consumer) + ") " + "died or closed its connection before taking " +
                                   (count == 1 ? "it" : "them"));
}

void log_hello_refused(std::int64_t pid, std::string_view why) {
    if (!log_enabled(LogLevel::warning)) return;
    log_record(LogLevel::warning,
               "broker refused a connection (HELLO from pid " + std::to_string(pid) + "): " + std::string(why));
}

void log_peer_refused(std::string_view description) {
    if (!log_enabled(LogLevel::warning)) return;
    log_record(LogLevel::warning, "broker: " + std::string(description));
}

}  // namespace zmp::detail::broker
