#include "zmp/exceptions.hpp"

#include <cxxabi.h>

#include <mutex>
#include <new>
#include <stdexcept>
#include <typeinfo>
#include <unordered_map>

#include "runtime/identity.hpp"
#include "zmp/transport/codec.hpp"

namespace zmp::detail {
namespace {

using Maker = std::function<std::exception_ptr(const std::string&)>;

template <class T>
std::pair<std::string, Maker> known() {
    return {transport::type_name(typeid(T)), [](const std::string& what) { return std::make_exception_ptr(T(what)); }};
}

struct Registry {
    std::mutex mutex;
    std::unordered_map<std::string, Maker> makers{
        known<std::runtime_error>(),
        known<std::logic_error>(),
        known<std::invalid_argument>(),
        known<std::domain_error>(),
        known<std::length_error>(),
        known<std::out_of_range>(),
        known<std::range_error>(),
        known<std::overflow_error>(),
        known<std::underflow_error>(),
        known<ProcessError>(),
        known<ValueError>(),
        known<ProtocolError>(),
        known<EOFError>(),
        known<AuthenticationError>(),
        known<TimeoutError>(),
        known<RuntimeError>(),
        known<PoolTerminated>(),
        known<BrokenPool>(),
        known<CancelledError>(),
        known<IndexError>(),
        known<KeyError>(),
        known<TypeError>(),
        known<AttributeError>(),
        {transport::type_name(typeid(OSError)),
         [](const std::string& what) { return std::make_exception_ptr(OSError(what)); }},
        {transport::type_name(typeid(std::bad_alloc)),
         [](const std::string&) { return std::make_exception_ptr(std::bad_alloc()); }},
    };
};

Registry& registry() {
    static Registry* r = new Registry();
    return *r;
}

}  // namespace

void register_exception(const std::string& type, Maker make) {
    Registry& r = registry();
    std::lock_guard lock(r.mutex);
    r.makers[type] = std::move(make);
}

ErrorRecord capture_current_exception() {
    ThisProcess& me = this_process();
    ErrorRecord record{"", "", me.name(), static_cast<int>(me.pid())};
    try {
        throw;
    } catch (const RemoteError& e) {
        // Passing on someone else's error: keep the original type and origin.
        record = {e.type_name(), e.message(), e.origin(), e.pid()};
    } catch (const std::exception& e) {
        record.type = transport::type_name(typeid(e));
        record.message = e.what();
    } catch (...) {
        const std::type_info* type = abi::__cxa_current_exception_type();
        record.type = type ? transport::type_name(*type) : "unknown exception";
    }
    return record;
}

std::exception_ptr exception_from_record(const ErrorRecord& record) {
    {
        Registry& r = registry();
        std::lock_guard lock(r.mutex);
        if (auto it = r.makers.find(record.type); it != r.makers.end()) return it->second(record.message);
    }
    return std::make_exception_ptr(RemoteError(record.type, record.message, record.origin, record.pid));
}

}  // namespace zmp::detail
