// A logging call's message: its {}-format string and type-erased arguments (zmp/logging.hpp's
// FormatArg), formatted by {fmt} — compiled into zmp header-only, so its users inherit nothing.

#include <fmt/args.h>
#include <fmt/format.h>

#include <string>

#include "logging/carrier.hpp"
#include "logging/format.hpp"
#include "zmp/errors.hpp"

namespace zmp::detail {

namespace {

using ArgStore = fmt::dynamic_format_arg_store<fmt::format_context>;

std::string format_with(ArgStore& store, std::string_view format, const FormatArg* args, std::size_t count) {
    store.clear();
    for (std::size_t i = 0; i < count; ++i) {
        const FormatArg& arg = args[i];
        switch (arg.kind) {
            case FormatArg::Kind::boolean:
                store.push_back(arg.value.boolean);
                break;
            case FormatArg::Kind::character:
                store.push_back(arg.value.character);
                break;
            case FormatArg::Kind::signed_int:
                store.push_back(arg.value.signed_int);
                break;
            case FormatArg::Kind::unsigned_int:
                store.push_back(arg.value.unsigned_int);
                break;
            case FormatArg::Kind::floating:
                store.push_back(arg.value.floating);
                break;
            case FormatArg::Kind::text:
                store.push_back(fmt::string_view(arg.text.data(), arg.text.size()));  // not copied
                break;
            case FormatArg::Kind::pointer:
                store.push_back(arg.value.pointer);
                break;
        }
    }
    try {
        return fmt::vformat(fmt::string_view(format.data(), format.size()), store);
    } catch (const fmt::format_error& e) {
        throw ValueError("bad log format string \"" + std::string(format) + "\" for its " + std::to_string(count) +
                         " argument(s): " + e.what());
    }
}

}  // namespace

std::string format_message(std::string_view format, const FormatArg* args, std::size_t count) {
    if (thread_locals_gone()) {  // in an exit hook of the thread that called exit()
        ArgStore store;
        return format_with(store, format, args, count);
    }
    // One argument store per thread, cleared for each call: no allocation once it has grown.
    thread_local ArgStore store;
    return format_with(store, format, args, count);
}

}  // namespace zmp::detail
