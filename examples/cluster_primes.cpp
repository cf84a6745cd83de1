// The primes demo served by workers that join over tcp: this program is both the head and its
// own worker binary. Run alone, it binds a pool on loopback with no local workers, starts two
// copies of itself as workers (as ssh or srun would on other hosts), and counts the primes below
// 200,000 on them. On real hosts, start the head with the endpoint and key of your choice and run
//     ./cluster_primes worker --connect tcp://head:5555 --authkey-file cluster.key
// on each worker host.
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <zmp/zmp.hpp>
#include <zmp/worker.hpp>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <utility>
#include <vector>

extern char** environ;

// Primes in [lo, hi), by trial division: deliberately CPU-bound.
long count_primes(long lo, long hi) {
    long count = 0;
    for (long n = lo < 2 ? 2 : lo; n < hi; ++n) {
        bool prime = true;
        for (long d = 2; d * d <= n; ++d) {
            if (n % d == 0) {
                prime = false;
                break;
            }
        }
        count += prime ? 1 : 0;
    }
    return count;
}
// The name by which the task reaches workers built from other sources.
ZMP_TASK("count_primes", count_primes);

int main(int argc, char** argv) {
    if (argc > 1 && std::string(argv[1]) == "worker") return zmp::worker_main(argc - 1, argv + 1);
    zmp::init(argc, argv);

    // The secret head and workers share, in a file only its owner may read.
    char dir[] = "/tmp/cluster-primes-XXXXXX";
    if (::mkdtemp(dir) == nullptr) return 1;
    const std::string key_file = std::string(dir) + "/authkey";
    const zmp::Authkey key = zmp::generate_authkey();
    zmp::write_authkey_file(key_file, key);

    std::vector<pid_t> workers;
    long total = 0;
    {
        zmp::Pool pool({.processes = 0, .bind = "tcp://127.0.0.1:0", .authkey = key});
        for (const char* name : {"w1", "w2"}) {
            std::vector<std::string> args = {argv[0],          "worker", "--connect", pool.endpoint(),
                                             "--authkey-file", key_file, "--name",    name};
            std::vector<char*> c_args;
            for (auto& a : args) c_args.push_back(a.data());
            c_args.push_back(nullptr);
            pid_t pid;
            if (::posix_spawn(&pid, argv[0], nullptr, nullptr, c_args.data(), environ) == 0) workers.push_back(pid);
        }
        while (pool.processes() < 2) std::this_thread::sleep_for(std::chrono::milliseconds(10));
        std::printf("%d workers joined\n", pool.processes());

        std::vector<std::pair<long, long>> ranges;
        for (long lo = 0; lo < 200000; lo += 5000) ranges.emplace_back(lo, lo + 5000);
        for (long count : pool.starmap(count_primes, ranges)) total += count;
    }  // closing the pool retires its workers
    std::printf("%ld primes below 200000\n", total);
    int failed = 0;
    for (pid_t pid : workers) {
        int status = 0;
        ::waitpid(pid, &status, 0);
        failed += !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    std::printf("workers retired: %s\n", failed == 0 ? "yes" : "no");
    std::system((std::string("rm -rf ") + dir).c_str());
    return failed;
}
