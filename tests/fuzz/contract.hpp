#pragma once
// What every fuzz harness shares: how a broken contract is reported. libFuzzer counts an abort as a
// crash and saves the input that caused it; the message says which promise the decoder broke.

#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>

namespace zmp_fuzz {

[[noreturn]] inline void violated(const std::string& what) {
    std::fprintf(stderr, "contract violated: %s\n", what.c_str());
    std::fflush(stderr);
    std::abort();
}

inline void expect(bool holds, const std::string& what) {
    if (!holds) violated(what);
}

/// Calls f(std::make_index_sequence<n>()) for a count `n` <= Max known only at run time: how a
/// harness hands a decoded array back to an encoder that takes an initializer_list.
template <std::size_t Max, std::size_t N = 0, class F>
void with_index_sequence(std::size_t n, F&& f) {
    if constexpr (N > Max) {
        violated("a decoder returned " + std::to_string(n) + " elements, over its limit of " + std::to_string(Max));
    } else if (n == N) {
        f(std::make_index_sequence<N>());
    } else {
        with_index_sequence<Max, N + 1>(n, std::forward<F>(f));
    }
}

}  // namespace zmp_fuzz
