// The guide's remote manager, server side: a Manager served on a tcp address, publishing a queue of
// tasks, a dict for the answers and an Event, for unrelated programs that hold the authkey
// (manager_client.cpp). Python:
//     class QueueManager(BaseManager): pass
//     QueueManager.register('get_queue', callable=lambda: queue)
//     m = QueueManager(address=('', 50000), authkey=b'abracadabra'); m.get_server().serve_forever()
//
//   manager_server [address] [keyfile]     (defaults: tcp://127.0.0.1:50000, manager.key)
// writes a new authkey to keyfile, prints "serving <address>", once a client has set "done"
// prints the squares it computed, and serves on until it is killed.
#include <zmp/zmp.hpp>

#include <cstdio>
#include <chrono>
#include <string>
#include <thread>

int main(int argc, char** argv) {
    zmp::init(argc, argv);
    const std::string address = argc > 1 ? argv[1] : "tcp://127.0.0.1:50000";
    const std::string keyfile = argc > 2 ? argv[2] : "manager.key";
    const zmp::Authkey key = zmp::generate_authkey();
    zmp::write_authkey_file(keyfile, key);  // the client's copy of the key

    auto manager = zmp::Manager::serve(address, key);
    auto tasks = manager.Queue<int>();
    for (int n = 1; n <= 5; ++n) tasks.put(n);
    auto done = manager.Event();
    manager.publish("tasks", tasks);
    manager.publish("squares", manager.dict<int, int>());
    manager.publish("done", done);
    std::printf("serving %s\n", manager.address().c_str());
    std::fflush(stdout);

    done.wait();
    std::string text = "squares: {";
    for (const auto& [n, square] : manager.get<zmp::DictProxy<int, int>>("squares").copy()) {
        if (text.back() != '{') text += ", ";
        text += std::to_string(n);
        text += ": ";
        text += std::to_string(square);
    }
    std::printf("%s}\n", text.c_str());
    std::printf("visits: %d\n", manager.get<zmp::ValueProxy<int>>("visits").get());
    std::fflush(stdout);
    // Serves on, as Python's serve_forever(), until it is killed: a client may still be talking
    // to it (its last call's answer must not be lost with this process).
    for (;;) std::this_thread::sleep_for(std::chrono::hours(1));
}
