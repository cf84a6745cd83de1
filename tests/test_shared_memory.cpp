// SharedMemory and ShareableList, with real processes: Python's own cases for them, and Python reading zmp's lists.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "test_util.hpp"
#include "zmp/context.hpp"
#include "zmp/pipe.hpp"
#include "zmp/process.hpp"
#include "zmp/shared_memory.hpp"
#include "zmp/transport/codec.hpp"

using zmp::Bytes;
using zmp::ShareableList;
using zmp::ShareableValue;

namespace {

std::string unique_name(const std::string& tag) { return "zmp_test_" + std::to_string(::getpid()) + "_" + tag; }

bool exists(const std::string& name) {
    try {
        zmp::SharedMemory probe(name);
        return true;
    } catch (const zmp::FileNotFoundError&) {
        return false;
    }
}

}  // namespace

TEST_CASE("SharedMemory basics: create, attach by name, size, name, close, unlink") {
    const std::string name = unique_name("basics");
    zmp::SharedMemory shm(name, true, 512);
    CHECK(shm.name() == name);
    CHECK(shm.size() == 512);
    REQUIRE(shm.buf().size() == 512);
    CHECK(std::all_of(shm.buf().begin(), shm.buf().end(), [](std::byte b) { return b == std::byte{0}; }));
    std::memcpy(shm.buf().data(), "hello", 5);

    zmp::SharedMemory same(name);
    CHECK(same.size() == 512);
    CHECK(std::memcmp(same.buf().data(), "hello", 5) == 0);
    zmp::SharedMemory bigger(name, false, 4096);  // the size is ignored when attaching
    CHECK(bigger.size() == 512);
    zmp::SharedMemory slashed("/" + name);
    CHECK(slashed.name() == name);

    zmp::SharedMemory anonymous(std::nullopt, true, 64);
    CHECK(anonymous.name().starts_with("psm_"));
    CHECK(anonymous.name().size() == 12);
    anonymous.unlink();
    zmp::SharedMemory designated({.create = true, .size = 10});
    CHECK(designated.size() == 10);
    designated.unlink();

    zmp::SharedMemory copy = shm;
    shm.close();
    CHECK(copy.closed());  // close() closes every copy of the handle
    CHECK_THROWS_AS(shm.buf(), zmp::ValueError);
    CHECK(shm.name() == name);
    CHECK(shm.size() == 512);
    shm.close();  // idempotent
    shm.unlink();
    CHECK_FALSE(exists(name));
    CHECK_THROWS_AS(shm.unlink(), zmp::FileNotFoundError);
    CHECK(same.buf()[0] == std::byte{'h'});  // views made before the unlink keep working
}

TEST_CASE("SharedMemory creation errors are Python's") {
    const std::string name = unique_name("errors");
    CHECK_THROWS_WITH(zmp::SharedMemory(name, true, -1), "'size' must be a positive integer");
    CHECK_THROWS_WITH(zmp::SharedMemory(name, true, 0), "'size' must be a positive number different from zero");
    CHECK_THROWS_WITH(zmp::SharedMemory(name, true), "'size' must be a positive number different from zero");
    CHECK_THROWS_WITH(zmp::SharedMemory(std::nullopt), "'name' can only be None if create=True");
    CHECK_THROWS_AS(zmp::SharedMemory("a/b", true, 10), zmp::ValueError);
    CHECK_THROWS_AS(zmp::SharedMemory(name), zmp::FileNotFoundError);
    CHECK_THROWS_AS(zmp::SharedMemory().buf(), zmp::ValueError);

    zmp::SharedMemory first(name, true, 16);
    try {
        zmp::SharedMemory second(name, true, 16);
        FAIL("creating an existing name succeeded");
    } catch (const zmp::FileExistsError& e) {
        CHECK(e.code() == EEXIST);
    }
    first.unlink();
}

TEST_CASE("SharedMemory across processes: by name, through a Pipe, and after unlink") {
    constexpr std::size_t size = 1 << 20;
    zmp::SharedMemory shm(std::nullopt, true, size);
    zmp::Process writer([name = shm.name()] {
        zmp::SharedMemory mine(name);
        std::memset(mine.buf().data(), 7, mine.size());
    });
    writer.start();
    writer.join();
    REQUIRE(writer.exitcode() == 0);
    CHECK(std::all_of(shm.buf().begin(), shm.buf().end(), [](std::byte b) { return b == std::byte{7}; }));

    auto [here, there] = zmp::Pipe();
    zmp::Process receiver([c = there]() mutable {
        auto received = c.recv<zmp::SharedMemory>();
        received.buf()[size - 1] = std::byte{9};
        c.send(received.name());
    });
    receiver.start();
    there.close();
    here.send(shm);
    CHECK(here.recv<std::string>() == shm.name());
    receiver.join();
    CHECK(shm.buf()[size - 1] == std::byte{9});

    // The handle travels by name: decoding it after the unlink finds nothing.
    auto wire = zmp::transport::encode(shm);
    CHECK(wire.size() < 64);
    shm.unlink();
    CHECK_THROWS_AS(zmp::transport::decode_as<zmp::SharedMemory>(wire.data(), wire.size()), zmp::FileNotFoundError);
}

TEST_CASE("a process that attached and exits never unlinks the segment") {
    zmp::SharedMemory shm(std::nullopt, true, 128);
    for (int round = 0; round < 2; ++round) {
        zmp::Process attacher([name = shm.name(), round] {
            zmp::SharedMemory mine(name);
            mine.buf()[0] = std::byte{42};
            if (round == 1) zmp::exit(0);  // through the exit path as well as by returning
        });
        attacher.start();
        attacher.join();
        CHECK(attacher.exitcode() == 0);
        CHECK(exists(shm.name()));
    }
    CHECK(zmp::SharedMemory(shm.name()).buf()[0] == std::byte{42});
    shm.unlink();
}

TEST_CASE("ShareableList basics: format, indices, storage limits, count and index") {
    ShareableList sl({"howdy", Bytes{"HoWdY"}, -273.154, 100, nullptr, true, 42});
    CHECK(sl.format() == "8s8sdqxxxxxx?xxxxxxxx?q");
    CHECK(sl.size() == 7);
    CHECK(sl.get(0) == ShareableValue("howdy"));
    CHECK(sl.get(1) == ShareableValue(Bytes{"HoWdY"}));
    CHECK(sl.get(2) == ShareableValue(-273.154));
    CHECK(sl.get(3) == ShareableValue(100));
    CHECK(sl.get(4) == ShareableValue(nullptr));
    CHECK(sl.get(5) == ShareableValue(true));
    CHECK(sl[-1] == ShareableValue(42));
    CHECK_THROWS_WITH(sl.get(7), "index out of range");
    CHECK_THROWS_AS(sl.get(-8), zmp::IndexError);
    CHECK_THROWS_WITH(sl.set(7, 1), "assignment index out of range");

    // Slots are fixed: 8 bytes for "howdy"; a value of another type may take a slot it fits.
    CHECK_THROWS_WITH(sl.set(0, "encyclopedia"), "bytes/str item exceeds available storage");
    CHECK_THROWS_WITH(sl.set(1, Bytes{"encyclopedia"}), "bytes/str item exceeds available storage");
    sl[0] = "exactly8";
    CHECK(sl.get(0) == ShareableValue("exactly8"));
    sl[3] = "str";
    sl[2] = 1;
    sl[4] = 2.5;
    sl[5] = Bytes{"b"};
    sl[6] = nullptr;
    CHECK(sl.format() == "8s8sq8sd8sxxxxxx?x");
    CHECK(sl.get(3) == ShareableValue("str"));
    CHECK(sl.get(6) == ShareableValue(nullptr));
    sl[3] = false;
    CHECK(sl.get(3) == ShareableValue(false));
    sl[3] = "back";  // a str returns to its whole slot
    CHECK(sl.get(3) == ShareableValue("back"));
    CHECK(sl.format() == "8s8sq8sd8sxxxxxx?x");
    sl[0] = std::string("ab\0\0", 4);  // as Python, trailing NULs are not kept
    CHECK(sl.get(0) == ShareableValue("ab"));

    ShareableList mixed({1, 1.0, true, "1", Bytes{"1"}, nullptr, 2, 0.5});
    CHECK(mixed.count(1) == 3);  // Python: 1 == 1.0 == True
    CHECK(mixed.count(1.0) == 3);
    CHECK(mixed.count("1") == 1);
    CHECK(mixed.count(Bytes{"1"}) == 1);
    CHECK(mixed.count(nullptr) == 1);
    CHECK(mixed.count(false) == 0);
    CHECK(mixed.index(2) == 6);
    CHECK(mixed.index(true) == 0);
    CHECK(mixed.index(0.5) == 7);
    CHECK_THROWS_WITH(mixed.index("x"), "'x' not in this container");
    CHECK_THROWS_WITH(mixed.index(Bytes{"it's"}), "b\"it's\" not in this container");
    std::vector<ShareableValue> all(mixed.begin(), mixed.end());
    CHECK(all.size() == 8);
    CHECK(all[3] == ShareableValue("1"));

    // A str or bytes slot is 8 * (len / 8 + 1) bytes.
    ShareableList sizes({"12345678", "", Bytes{"1234567"}});
    CHECK(sizes.format() == "16s8s8s");
    std::ostringstream text;
    text << sizes;
    CHECK(text.str() == "ShareableList(['12345678', '', b'1234567'], name='" + sizes.name() + "')");

    ShareableList empty(std::vector<ShareableValue>{});
    CHECK(empty.size() == 0);
    CHECK(empty.format().empty());
    CHECK(empty.begin() == empty.end());

    for (auto* list : {&sl, &mixed, &sizes, &empty}) list->shm().unlink();
}

TEST_CASE("ShareableList by name: a second handle sees writes, names and errors") {
    const std::string name = unique_name("list");
    ShareableList sl({0, "text", 2.5}, name);
    CHECK(sl.name() == name);
    ShareableList other = ShareableList::attach(name);
    CHECK(other.size() == 3);
    sl[0] = 99;
    other[1] = "TEXT";
    CHECK(other.get(0) == ShareableValue(99));
    CHECK(sl.get(1) == ShareableValue("TEXT"));
    CHECK_THROWS_AS(ShareableList({1}, name), zmp::FileExistsError);
    CHECK_THROWS_AS(ShareableList::attach(unique_name("missing")), zmp::FileNotFoundError);
    CHECK_THROWS_AS(ShareableList().size(), zmp::ValueError);

    // A segment that does not hold a ShareableList is refused.
    zmp::SharedMemory junk(std::nullopt, true, 64);
    std::memset(junk.buf().data(), 0x7f, 64);
    CHECK_THROWS_AS(ShareableList::attach(junk.name()), zmp::ProtocolError);
    junk.unlink();
    sl.shm().unlink();
}

TEST_CASE("ShareableList across processes: disjoint writes, a handle through a Pipe") {
    ShareableList sl({0, 0, 0, 0, "--------"});
    std::vector<zmp::Process> writers;
    for (int k = 0; k < 4; ++k) {
        writers.emplace_back([name = sl.name(), k] {
            ShareableList mine = ShareableList::attach(name);
            mine[k] = k * 10;
        });
    }
    for (auto& p : writers) p.start();
    for (auto& p : writers) {
        p.join();
        CHECK(p.exitcode() == 0);
    }
    CHECK(std::vector<ShareableValue>(sl.begin(), sl.end()) == std::vector<ShareableValue>{0, 10, 20, 30, "--------"});

    auto [here, there] = zmp::Pipe();
    zmp::Process receiver([c = there]() mutable {
        auto list = c.recv<ShareableList>();
        list[-1] = "received";
        c.send(list.size());
    });
    receiver.start();
    there.close();
    here.send(sl);
    CHECK(here.recv<std::size_t>() == 5);
    receiver.join();
    CHECK(sl.get(4) == ShareableValue("received"));

    // It travels by name: the message does not grow with the list.
    ShareableList big(std::vector<ShareableValue>(1000, 1.5));
    CHECK(zmp::transport::encode(big).size() == zmp::transport::encode(sl).size());
    big.shm().unlink();
    sl.shm().unlink();
}

#ifdef ZMP_PYTHON3
TEST_CASE("ShareableList has Python's layout: Python reads and writes zmp's lists and the other way round") {
    ShareableList sl({"howdy", Bytes{"HoWdY"}, -273.154, 100, nullptr, true, 42});
    // Attaching from Python 3.11 registers the segment with its resource tracker, which would
    // unlink it at exit (docs/design.md, Upstream behaviour zmp works around): unregister right away.
    const std::string read_write =
        "from multiprocessing import shared_memory, resource_tracker\n"
        "sl = shared_memory.ShareableList(name='" +
        sl.name() +
        "')\n"
        "resource_tracker.unregister(sl.shm._name, 'shared_memory')\n"
        "print(list(sl), sl.format)\n"
        "sl[3] = 'py'\n"
        "sl[6] = 7.25\n"
        "sl.shm.close()\n";
    auto result = test_util::run_command(std::string(ZMP_PYTHON3) + " -c \"" + read_write + "\"");
    REQUIRE(result.status == 0);
    CHECK(result.out == "['howdy', b'HoWdY', -273.154, 100, None, True, 42] 8s8sdqxxxxxx?xxxxxxxx?q\n");
    CHECK(sl.get(3) == ShareableValue("py"));
    CHECK(sl.get(6) == ShareableValue(7.25));
    sl.shm().unlink();

    const std::string create =
        "from multiprocessing import shared_memory, resource_tracker\n"
        "sl = shared_memory.ShareableList(['abc', b'xyz', 1.5, -3, None, False, 'long text here'])\n"
        "resource_tracker.unregister(sl.shm._name, 'shared_memory')\n"
        "print(sl.shm.name)\n"
        "sl.shm.close()\n";
    result = test_util::run_command(std::string(ZMP_PYTHON3) + " -c \"" + create + "\"");
    REQUIRE(result.status == 0);
    const std::string name = result.out.substr(0, result.out.find('\n'));
    ShareableList from_python = ShareableList::attach(name);
    CHECK(std::vector<ShareableValue>(from_python.begin(), from_python.end()) ==
          std::vector<ShareableValue>{"abc", Bytes{"xyz"}, 1.5, -3, nullptr, false, "long text here"});
    CHECK(from_python.format() == "8s8sdqxxxxxx?xxxxxxxx?16s");
    from_python.shm().unlink();
}
#endif

namespace {
void write_greeting(zmp::SharedMemory block) {
    const std::string text = "written by a child";
    std::memcpy(block.buf().data(), text.data(), text.size());
}
}  // namespace

TEST_CASE("a SharedMemory handle works as an argument under every start method") {
    const auto method = GENERATE(zmp::StartMethod::fork, zmp::StartMethod::spawn, zmp::StartMethod::forkserver);
    zmp::SharedMemory block(zmp::SharedMemoryOptions{.create = true, .size = 64});
    zmp::Process p = zmp::get_context(method).Process(write_greeting, block);
    p.start();
    p.join();
    CHECK(p.exitcode() == 0);
    CHECK(std::string(reinterpret_cast<const char*>(block.buf().data()), 18) == "written by a child");
    block.unlink();
}
