#pragma once
// Bytes as hex text and back: how handles travel on a test helper's command line.

#include <msgpack.hpp>

#include <cstddef>
#include <string>

namespace test_util {

inline std::string hex(const msgpack::sbuffer& b) {
    static const char* digits = "0123456789abcdef";
    std::string s;
    for (std::size_t i = 0; i < b.size(); ++i) {
        const auto c = static_cast<unsigned char>(b.data()[i]);
        s += digits[c >> 4];
        s += digits[c & 15];
    }
    return s;
}

inline std::string unhex(const std::string& text) {
    std::string bytes;
    for (std::size_t i = 0; i + 1 < text.size(); i += 2)
        bytes.push_back(static_cast<char>(std::stoi(text.substr(i, 2), nullptr, 16)));
    return bytes;
}

}  // namespace test_util
