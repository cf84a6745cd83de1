// A program on "another host": it knows only a broker's tcp endpoint and an authkey file, joins
// the broker with zmp::connect, and uses handles it is given on its command line (hex of their
// msgpack) or makes. Prints what it sees, one line each; exit 0 when everything went as expected.
//
//   remote_client <endpoint> <keyfile> handles <hex of tuple<Lock, Event, Queue<std::string>>>
//       the lock is held by someone else: sets the event, takes the lock once it is released,
//       puts "from remote" in the queue.
//   remote_client <endpoint> <keyfile> make
//       makes a Lock, a Semaphore(1) and a Barrier(2); prints "objects <hex>"; takes the lock and
//       the semaphore ("held"), then waits at the barrier for ever.
//   remote_client <endpoint> <keyfile> take <hex from make>
//       prints "claimed", then "lock owner_died=<0|1>" once it gets the lock, "semaphore" once it
//       gets a unit, "barrier broken=<0|1>".
//   remote_client <endpoint> <keyfile> refused
//       expects zmp::connect to raise AuthenticationError: prints "refused".
#include <cstdio>
#include <string>
#include <thread>
#include <tuple>

#include "zmp/authkey.hpp"
#include "zmp/context.hpp"
#include "zmp/errors.hpp"
#include "zmp/queue.hpp"
#include "zmp/remote.hpp"
#include "zmp/sync.hpp"
#include "zmp/transport/codec.hpp"
#include "../hex_text.hpp"

namespace {

using test_util::hex;
using test_util::unhex;

void say(const std::string& line) {
    std::printf("%s\n", line.c_str());
    std::fflush(stdout);
}

using namespace std::chrono_literals;

}  // namespace

int main(int argc, char** argv) {
    zmp::init(argc, argv);
    if (argc < 4) return 2;
    const std::string endpoint = argv[1], keyfile = argv[2], mode = argv[3];
    try {
        const zmp::Authkey key = zmp::read_authkey_file(keyfile);
        if (mode == "refused") {
            try {
                zmp::connect(endpoint, key, 60s);
            } catch (const zmp::AuthenticationError& e) {
                say("refused");
                return 0;
            }
            say("admitted");
            return 1;
        }
        zmp::connect(endpoint, key, 60s);
        if (mode == "handles" && argc == 5) {
            const std::string bytes = unhex(argv[4]);
            auto [lock, event, queue] =
                zmp::transport::decode_as<std::tuple<zmp::Lock, zmp::Event, zmp::Queue<std::string>>>(bytes.data(),
                                                                                                      bytes.size());
            if (lock.acquire(false)) {
                say("the lock was free");
                return 1;
            }
            event.set();
            if (!lock.acquire(60s)) {
                say("the lock never came");
                return 1;
            }
            queue.put("from remote");
            lock.release();
            say("handles ok");
            return 0;
        }
        if (mode == "make") {
            zmp::Lock lock;
            zmp::Semaphore semaphore(1);
            zmp::Barrier barrier(2);
            say("objects " + hex(zmp::transport::encode(std::make_tuple(lock, semaphore, barrier))));
            lock.acquire();
            semaphore.acquire();
            say("held");
            (void)barrier.wait();
            say("the barrier passed");
            return 1;
        }
        if (mode == "take" && argc == 5) {
            const std::string bytes = unhex(argv[4]);
            auto [lock, semaphore, barrier] =
                zmp::transport::decode_as<std::tuple<zmp::Lock, zmp::Semaphore, zmp::Barrier>>(bytes.data(),
                                                                                               bytes.size());
            say("claimed");
            if (!lock.acquire(120s)) {
                say("the lock never came");
                return 1;
            }
            say(std::string("lock owner_died=") + (lock.owner_died() ? "1" : "0"));
            if (!semaphore.acquire(60s)) {
                say("the semaphore never came");
                return 1;
            }
            say("semaphore");
            for (int i = 0; i < 600 && !barrier.broken(); ++i) std::this_thread::sleep_for(100ms);
            say(std::string("barrier broken=") + (barrier.broken() ? "1" : "0"));
            return 0;
        }
    } catch (const std::exception& e) {
        say(std::string("error: ") + e.what());
        return 1;
    }
    return 2;
}
