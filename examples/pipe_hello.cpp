// The guide's Pipe example: the child sends [42, None, 'hello'] to its parent.
#include <zmp/zmp.hpp>

#include <cstdio>
#include <optional>
#include <string>
#include <tuple>

using Message = std::tuple<int, std::optional<int>, std::string>;

void f(zmp::Connection conn) {
    conn.send(Message{42, std::nullopt, "hello"});
    conn.close();
}

int main(int argc, char** argv) {
    zmp::init(argc, argv);
    auto [parent_conn, child_conn] = zmp::Pipe();
    zmp::Process p(f, child_conn);
    p.start();
    auto [number, nothing, text] = parent_conn.recv<Message>();
    std::printf("[%d, %s, '%s']\n", number, nothing ? "?" : "None", text.c_str());
    p.join();
}
