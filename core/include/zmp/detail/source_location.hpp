#pragma once
// zmp::detail::SourceLocation: where a call was written, for log records. std::source_location
// cannot be used: libstdc++ 12's needs __builtin_source_location, which clang 14 lacks (its
// <source_location> then declares nothing). __builtin_FILE and __builtin_LINE, which both GCC and
// clang have, give the same answer when used as default arguments: the caller's file and line,
// also through a default argument that calls current().
//
//     void note(std::string_view text, SourceLocation where = SourceLocation::current());
//     note("hello");   // where.file_name() is this file, where.line() this line
//
// Part of zmp's vocabulary (self-contained; any layer may use it). Not a public API.

#include <cstdint>

namespace zmp::detail {

class SourceLocation {
public:
    /// The location of the call that uses this as a default argument.
    static constexpr SourceLocation current(const char* file = __builtin_FILE(),
                                            std::uint_least32_t line = __builtin_LINE()) noexcept {
        return SourceLocation(file, line);
    }
    constexpr const char* file_name() const noexcept { return file_; }
    constexpr std::uint_least32_t line() const noexcept { return line_; }

private:
    constexpr SourceLocation(const char* file, std::uint_least32_t line) noexcept : file_(file), line_(line) {}
    const char* file_;
    std::uint_least32_t line_;
};

}  // namespace zmp::detail
