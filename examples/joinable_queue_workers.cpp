// A work queue: four daemon worker processes take jobs from a JoinableQueue, put each result on
// a second Queue and mark the job done; the producer puts 20 jobs and join()s the queue, which
// returns once every job is done. The daemons are terminated when main returns.
//   Python: while True: job = jobs.get(); results.put(work(job)); jobs.task_done()
#include <zmp/zmp.hpp>

#include <algorithm>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

constexpr int kWorkers = 4;
constexpr int kJobs = 20;

void worker(zmp::JoinableQueue<int> jobs, zmp::Queue<std::pair<int, int>> results) {
    for (;;) {
        const int job = jobs.get();
        results.put({job, job * job});
        jobs.task_done();
    }
}

int main(int argc, char** argv) {
    zmp::init(argc, argv);
    zmp::JoinableQueue<int> jobs;
    zmp::Queue<std::pair<int, int>> results;
    std::vector<zmp::Process> workers;
    for (int w = 0; w < kWorkers; ++w) {
        workers.emplace_back(zmp::ProcessOptions{.name = "worker-" + std::to_string(w), .daemon = true}, worker, jobs,
                             results);
        workers.back().start();
    }
    for (int job = 0; job < kJobs; ++job) jobs.put(job);
    jobs.join();  // every job has been marked done
    std::printf("all %d jobs done by %d workers\n", kJobs, kWorkers);

    std::vector<std::pair<int, int>> done;
    for (int i = 0; i < kJobs; ++i) done.push_back(results.get());
    std::sort(done.begin(), done.end());
    long sum = 0;
    std::string squares;
    for (auto [job, square] : done) {
        if (!squares.empty()) squares += ' ';
        squares += std::to_string(square);
        sum += square;
    }
    std::printf("squares: %s\n", squares.c_str());
    std::printf("sum of squares: %ld\n", sum);
}
