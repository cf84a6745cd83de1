#pragma once
// Files of a test that runs programs: a scratch directory for key files and logs, removed at the
// end, and the lines those programs write to their logs, waited for.
#include <stdlib.h>

#include <catch2/catch.hpp>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>
#include <thread>

#include "zmp/authkey.hpp"

namespace test_util {

/// A directory of its own under /tmp ("/tmp/<prefix>-XXXXXX"), removed with what it holds.
struct ScratchDir {
    std::string dir;
    explicit ScratchDir(const std::string& prefix) {
        std::string pattern = "/tmp/" + prefix + "-XXXXXX";
        REQUIRE(::mkdtemp(pattern.data()) != nullptr);
        dir = pattern;
    }
    ~ScratchDir() {
        std::error_code ignored;
        std::filesystem::remove_all(dir, ignored);
    }
    ScratchDir(const ScratchDir&) = delete;
    ScratchDir& operator=(const ScratchDir&) = delete;
    /// The path of `name` in the directory.
    std::string path(const std::string& name) const { return dir + "/" + name; }
    /// A new authkey file `name` in the directory, with a fresh key; its path.
    std::string key(const std::string& name) const {
        const std::string path = dir + "/" + name;
        zmp::write_authkey_file(path, zmp::generate_authkey());
        return path;
    }
};

/// All of the file `path` (empty if there is none).
inline std::string log_of(const std::string& path) {
    std::ifstream log(path);
    return std::string(std::istreambuf_iterator<char>(log), {});
}

/// The first line of the log `path` that starts with `prefix` (or, with `anywhere`, contains it),
/// waiting at most `limit` (test set-up).
inline std::optional<std::string> line_in(const std::string& path, const std::string& prefix,
                                          std::chrono::milliseconds limit = std::chrono::seconds(60),
                                          bool anywhere = false) {
    const auto until = std::chrono::steady_clock::now() + limit;
    do {
        std::ifstream log(path);
        for (std::string line; std::getline(log, line);)
            if (anywhere ? line.find(prefix) != std::string::npos : line.rfind(prefix, 0) == 0) return line;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    } while (std::chrono::steady_clock::now() < until);
    return std::nullopt;
}

}  // namespace test_util
