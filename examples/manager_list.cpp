// The guide's Manager example: a child changes a dict and a list that live in the Manager; the
// parent prints them.
//   Python: def f(d, l): d[1] = '1'; d['2'] = 2; d[0.25] = None; l.reverse()
//           with Manager() as manager:
//               d = manager.dict(); l = manager.list(range(10))
//               p = Process(target=f, args=(d, l)); p.start(); p.join(); print(d); print(l)
#include <zmp/zmp.hpp>

#include <cstdio>
#include <string>
#include <vector>

// Python's repr of the values this example stores.
std::string repr(const zmp::AnyValue& v) {
    if (v.is_nil()) return "None";
    if (v.is<std::string>()) {
        std::string quoted = "'";
        quoted += v.as<std::string>();
        quoted += '\'';
        return quoted;
    }
    if (v.is<long long>()) return std::to_string(v.as<long long>());
    char text[32];
    std::snprintf(text, sizeof text, "%g", v.as<double>());
    return text;
}

void f(zmp::DictProxy<> d, zmp::ListProxy<int> l) {
    d.set(1, "1");
    d.set("2", 2);
    d.set(0.25, zmp::AnyValue());  // None
    l.reverse();
}

int main(int argc, char** argv) {
    zmp::init(argc, argv);
    zmp::Manager manager;
    auto d = manager.dict();
    auto l = manager.list<int>({0, 1, 2, 3, 4, 5, 6, 7, 8, 9});

    zmp::Process p(f, d, l);
    p.start();
    p.join();

    std::string text = "{";
    for (const auto& [key, value] : d.items()) text += (text.size() > 1 ? ", " : "") + repr(key) + ": " + repr(value);
    std::printf("%s}\n", text.c_str());
    text = "[";
    for (int x : l.copy()) text += (text.size() > 1 ? ", " : "") + std::to_string(x);
    std::printf("%s]\n", text.c_str());
}
