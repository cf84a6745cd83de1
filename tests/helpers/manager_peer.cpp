// An unrelated program on either side of a Manager served on an address. Prints what it sees, one
// line each; exit 0 when everything went as expected.
//
//   manager_peer serve <keyfile>
//       Manager::serve on a loopback port; publishes "jobs" (a Queue<int> holding 1..5), "results"
//       (a DictProxy<int, int>) and "done" (an Event); prints "serving <address>", "done" once the
//       event is set, and serves until it is killed.
//   manager_peer <address> <keyfile> work
//       connects; squares each job into results; appends "worked" to get_or_create'd list "log";
//       prints "missing: KeyError" for get of a name nobody published and "wrong type: TypeError"
//       for results asked for as a Queue; sets "done"; prints "worked".
//   manager_peer <address> <keyfile> count <n>
//       connects; n atomic increments of key "n" of get_or_create'd dict "counts"; prints "counted".
//   manager_peer <address> <keyfile> no-manager
//       expects Manager::connect to raise ValueError (the broker there serves no Manager).
#include <cstdio>
#include <string>
#include <thread>

#include "zmp/authkey.hpp"
#include "zmp/context.hpp"
#include "zmp/errors.hpp"
#include "zmp/manager.hpp"

namespace {

void say(const std::string& line) {
    std::printf("%s\n", line.c_str());
    std::fflush(stdout);
}

using namespace std::chrono_literals;

}  // namespace

int main(int argc, char** argv) {
    zmp::init(argc, argv);
    if (argc < 3) return 2;
    try {
        if (std::string(argv[1]) == "serve") {
            auto manager = zmp::Manager::serve("tcp://127.0.0.1:0", zmp::read_authkey_file(argv[2]));
            auto jobs = manager.Queue<int>();
            for (int i = 1; i <= 5; ++i) jobs.put(i);
            manager.publish("jobs", jobs);
            manager.publish("results", manager.dict<int, int>());
            manager.publish("done", manager.Event());
            say("serving " + manager.address());
            if (manager.get<zmp::Event>("done").wait(3600s)) say("done");
            for (;;) std::this_thread::sleep_for(1h);  // serves until killed
        }
        if (argc < 4) return 2;
        const std::string address = argv[1], mode = argv[3];
        const zmp::Authkey key = zmp::read_authkey_file(argv[2]);
        if (mode == "no-manager") {
            try {
                (void)zmp::Manager::connect(address, key, 60s);
            } catch (const zmp::ValueError&) {
                say("no manager: ValueError");
                return 0;
            }
            say("connected");
            return 1;
        }
        auto manager = zmp::Manager::connect(address, key, 60s);
        if (mode == "work") {
            auto jobs = manager.get<zmp::Queue<int>>("jobs");
            auto results = manager.get<zmp::DictProxy<int, int>>("results");
            for (int i = 0; i < 5; ++i) {
                const int job = jobs.get(60s);
                results[job] = job * job;
            }
            manager.get_or_create<zmp::ListProxy<std::string>>("log").append("worked");
            try {
                (void)manager.get<zmp::DictProxy<int, int>>("nobody published this");
            } catch (const zmp::KeyError&) {
                say("missing: KeyError");
            }
            try {
                (void)manager.get<zmp::Queue<int>>("results");
            } catch (const zmp::TypeError&) {
                say("wrong type: TypeError");
            }
            manager.get<zmp::Event>("done").set();
            say("worked");
            return 0;
        }
        if (mode == "count" && argc >= 5) {
            auto counts = manager.get_or_create<zmp::DictProxy<std::string, int>>("counts");
            const int n = std::stoi(argv[4]);
            for (int i = 0; i < n; ++i) counts["n"] += 1;
            say("counted");
            return 0;
        }
        return 2;
    } catch (const std::exception& e) {
        say(std::string("error: ") + e.what());
        return 1;
    }
}
