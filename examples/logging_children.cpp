// The guide's "Logging" section: log_to_stderr(), levels, and children that log — here through
// the parent, which writes every process's records on its stderr, one whole line each.
//   Python: logger = multiprocessing.log_to_stderr(); logger.setLevel(logging.INFO)
//           logger.warning('doomed')   ->   [WARNING/MainProcess] doomed
#include <zmp/zmp.hpp>

#include <cstdio>

void worker(int n) {
    auto& log = zmp::get_logger();
    log.debug("worker {} is chatty", n);  // below INFO: never formatted, never sent
    log.info("worker {} started", n);
    if (n == 2) log.warning("worker {} found {} odd values", n, 3);
}

void quiet_worker() {
    auto& log = zmp::get_logger();
    log.set_level(zmp::LogLevel::error);  // this process only: it sends errors and worse
    log.warning("not sent");
    log.error("quiet worker failed: {}", "disk full");
}

int main(int argc, char** argv) {
    zmp::init(argc, argv);
    auto& logger = zmp::log_to_stderr();
    logger.set_level(zmp::LogLevel::info);  // children started from now on take INFO too
    logger.warning("doomed");

    for (int n = 1; n <= 2; ++n) {  // one after the other, so that the output has one order
        zmp::Process p(worker, n);
        p.start();
        p.join();
    }
    zmp::Process spawned = zmp::get_context("spawn").Process(worker, 3);  // a fresh image logs the same way
    spawned.start();
    spawned.join();
    zmp::Process quiet({.name = "quiet"}, quiet_worker);
    quiet.start();
    quiet.join();

    logger.debug("not written: below INFO");
    logger.info("all workers joined");  // after every record of the children it joined
    std::puts("done");
}
