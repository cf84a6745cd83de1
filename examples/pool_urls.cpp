// The guide's Pool example with slow I/O: 10 "URLs", each taking 2 s to fetch, on 5 workers.
// Serially that is 20 s; the pool does it in about 4 s.
#include <zmp/zmp.hpp>

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

// Stands in for downloading a page: waits 2 s, returns what it "got".
std::string fetch(std::string url) {
    std::this_thread::sleep_for(std::chrono::seconds(2));
    return "<html>" + url + "</html>";
}

int main(int argc, char** argv) {
    zmp::init(argc, argv);
    std::vector<std::string> urls;
    for (int i = 0; i < 10; ++i) urls.push_back("https://example.org/page" + std::to_string(i));
    const auto start = std::chrono::steady_clock::now();
    zmp::Pool pool(5);
    std::vector<std::string> pages = pool.map(fetch, urls, 1);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    for (const auto& page : pages) std::printf("%s\n", page.c_str());
    std::printf("fetched %zu pages in %.1f s with 5 workers (serially: 20 s)\n", pages.size(), seconds);
}
