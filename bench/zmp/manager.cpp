// zmp's figures for the Manager rows: one dict set and one dict get (a round trip each), and a
// batch of 1,000 (update + get_many) per item. Measured in a child process, as Python's client
// talks to its manager's server process: the child reaches the broker over ipc (the root itself
// would use inproc).
#include <string>

#include "bench.hpp"
#include "zmp/manager.hpp"
#include "zmp/pipe.hpp"
#include "zmp/process.hpp"

namespace {

enum class What { set, get, batch };

double dict_us(const bench::Options& opt, What what) {
    zmp::Manager manager;
    auto d = manager.dict<std::string, long>();
    auto [here, there] = zmp::Pipe();
    zmp::Process child([d, c = there, what, quick = opt.quick]() mutable {
        const bench::Options o{quick};
        double us = 0;
        if (what == What::batch) {
            std::vector<std::pair<std::string, long>> pairs;
            std::vector<std::string> keys;
            for (int i = 0; i < 1000; ++i) {
                pairs.emplace_back("key" + std::to_string(i), i);
                keys.push_back("key" + std::to_string(i));
            }
            us = 1e6 / 2000 * bench::seconds_per_op(5, o.n(20), [&] {
                     d.update(pairs);
                     (void)d.get_many(keys);
                 });
        } else {
            d.set("key", 1);
            long i = 0;
            us = 1e6 * bench::seconds_per_op(5, o.n(2000), [&] {
                     if (what == What::set) {
                         d.set("key", ++i);
                     } else {
                         (void)d.get("key");
                     }
                 });
        }
        c.send(us);
    });
    child.start();
    const double us = here.recv<double>();
    child.join();
    return us;
}

}  // namespace

ZMP_BENCH("manager.dict.set", "us") { return dict_us(opt, What::set); }
ZMP_BENCH("manager.dict.get", "us") { return dict_us(opt, What::get); }
ZMP_BENCH("manager.dict.batch1000", "us") { return dict_us(opt, What::batch); }
