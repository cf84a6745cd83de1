#include "runtime/stdio.hpp"

#include <ext/stdio_sync_filebuf.h>
#include <stdio_ext.h>

#include <cstdio>
#include <iostream>

namespace zmp::detail {
namespace {

void flush_stream(std::ostream& stream) {
    // Synced with stdio (the default), the stream keeps no buffer of its own.
    if (dynamic_cast<__gnu_cxx::stdio_sync_filebuf<char>*>(stream.rdbuf()) == nullptr) stream.flush();
}

}  // namespace

void flush_std_streams() {
    flush_stream(std::cout);
    flush_stream(std::cerr);
    if (__fpending(stdout) > 0) std::fflush(stdout);
    if (__fpending(stderr) > 0) std::fflush(stderr);
}

void discard_inherited_stdio() noexcept {
    // __fpurge takes no lock: glibc has already reset the stream locks in a child forked from a
    // threaded process (a lock another thread held stays with the parent), and this child runs
    // one thread. Nothing is read or written; only the pending bytes are forgotten.
    if (__fpending(stdout) > 0) __fpurge(stdout);
    if (__fpending(stderr) > 0) __fpurge(stderr);
}

}  // namespace zmp::detail
