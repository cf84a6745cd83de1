// The guide's remote manager, client side: an unrelated program that connects to manager_server
// with the authkey and works on the objects it published by name. Python:
//     QueueManager.register('get_queue')
//     m = QueueManager(address=('foo.bar.org', 50000), authkey=b'abracadabra'); m.connect()
//     queue = m.get_queue(); queue.put('hello')
//
//   manager_client <address> <keyfile>
#include <zmp/zmp.hpp>

#include <cstdio>

int main(int argc, char** argv) {
    zmp::init(argc, argv);
    if (argc < 3) {
        std::fprintf(stderr, "usage: manager_client <address> <keyfile>\n");
        return 2;
    }
    auto manager = zmp::Manager::connect(argv[1], zmp::read_authkey_file(argv[2]));
    auto tasks = manager.get<zmp::Queue<int>>("tasks");
    auto squares = manager.get<zmp::DictProxy<int, int>>("squares");
    for (int i = 0; i < 5; ++i) {
        const int n = tasks.get();
        squares[n] = n * n;
        std::printf("client: squared %d\n", n);
    }
    // A name nobody published yet: made here, once, for every program of the manager.
    auto visits = manager.get_or_create<zmp::ValueProxy<int>>("visits");
    std::printf("client: visit %d\n", visits.increment());
    try {
        (void)manager.get<zmp::Lock>("lock");
    } catch (const zmp::KeyError& e) {
        std::printf("client: no object named %s\n", e.what());
    }
    manager.get<zmp::Event>("done").set();
}
