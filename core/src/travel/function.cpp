#include "zmp/function.hpp"

#include "travel/starter_build.hpp"

#include <dlfcn.h>
#include <link.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <mutex>
#include <unordered_map>

namespace zmp::detail {
namespace {

struct Registered {
    const void* function;
    Trampoline trampoline;
};

struct Registry {
    std::mutex mutex;
    std::unordered_map<std::string, Registered> by_name;
    std::unordered_map<const void*, std::string> name_of;
};

Registry& registry() {
    static Registry* r = new Registry();  // used from static initialisers and at exit
    return *r;
}

// The loaded module (dl_iterate_phdr entry) whose executable segments hold `address`.
struct ModuleSearch {
    std::uintptr_t address;
    std::string name;
    std::uintptr_t base = 0;
    bool found = false;
};

int find_module(dl_phdr_info* info, std::size_t, void* data) {
    auto* search = static_cast<ModuleSearch*>(data);
    for (int i = 0; i < info->dlpi_phnum; ++i) {
        const ElfW(Phdr)& ph = info->dlpi_phdr[i];
        if (ph.p_type != PT_LOAD || !(ph.p_flags & PF_X)) continue;
        const std::uintptr_t start = info->dlpi_addr + ph.p_vaddr;
        if (search->address >= start && search->address < start + ph.p_memsz) {
            search->name = info->dlpi_name ? info->dlpi_name : "";
            search->base = info->dlpi_addr;
            search->found = true;
            return 1;
        }
    }
    return 0;
}

struct ModuleLookup {
    const std::string* name;
    std::uint64_t offset;
    const void* address = nullptr;
};

int resolve_in_module(dl_phdr_info* info, std::size_t, void* data) {
    auto* lookup = static_cast<ModuleLookup*>(data);
    if ((info->dlpi_name ? info->dlpi_name : "") != *lookup->name) return 0;
    const std::uintptr_t address = info->dlpi_addr + lookup->offset;
    for (int i = 0; i < info->dlpi_phnum; ++i) {  // it must land in executable code of that module
        const ElfW(Phdr)& ph = info->dlpi_phdr[i];
        if (ph.p_type != PT_LOAD || !(ph.p_flags & PF_X)) continue;
        const std::uintptr_t start = info->dlpi_addr + ph.p_vaddr;
        if (address >= start && address < start + ph.p_memsz) {
            // The loader gives a module's base as an integer: the address is made from it.
            // NOLINTNEXTLINE(performance-no-int-to-ptr)
            lookup->address = reinterpret_cast<const void*>(address);
            return 1;
        }
    }
    return 1;
}

CodeAddress locate(const void* code) {
    ModuleSearch search{reinterpret_cast<std::uintptr_t>(code)};
    ::dl_iterate_phdr(&find_module, &search);
    if (!search.found) throw ValueError("the target function is not in any loaded module");
    return {search.name, search.address - search.base};
}

const void* find(const CodeAddress& where) {
    ModuleLookup lookup{&where.module, where.offset};
    ::dl_iterate_phdr(&resolve_in_module, &lookup);
    if (lookup.address == nullptr) {
        throw ValueError("cannot find the target function in this process (module '" +
                         (where.module.empty() ? std::string("main program") : where.module) + "')");
    }
    return lookup.address;
}

}  // namespace

void register_function(const char* name, const void* fn, Trampoline tramp) {
    Registry& r = registry();
    std::lock_guard lock(r.mutex);
    r.by_name[name] = {fn, tramp};
    r.name_of.emplace(fn, name);
}

std::optional<std::pair<const void*, Trampoline>> resolve_registered(const std::string& name) {
    Registry& r = registry();
    std::lock_guard lock(r.mutex);
    auto it = r.by_name.find(name);
    if (it == r.by_name.end()) return std::nullopt;
    return std::pair{it->second.function, it->second.trampoline};
}

namespace {

// The NT_GNU_BUILD_ID note of the main program (the first module dl_iterate_phdr reports).
int find_build_id(dl_phdr_info* info, std::size_t, void* data) {
    auto* out = static_cast<std::string*>(data);
    for (int i = 0; i < info->dlpi_phnum; ++i) {
        const ElfW(Phdr)& ph = info->dlpi_phdr[i];
        if (ph.p_type != PT_NOTE) continue;
        // The loader gives a module's base as an integer: the note's address is made from it.
        // NOLINTNEXTLINE(performance-no-int-to-ptr)
        const char* note = reinterpret_cast<const char*>(info->dlpi_addr + ph.p_vaddr);
        const char* end = note + ph.p_memsz;
        while (note + sizeof(ElfW(Nhdr)) <= end) {
            const auto* header = reinterpret_cast<const ElfW(Nhdr)*>(note);
            const char* name = note + sizeof(ElfW(Nhdr));
            const char* desc = name + ((header->n_namesz + 3) & ~3u);
            if (header->n_type == NT_GNU_BUILD_ID && header->n_namesz == 4 && std::memcmp(name, "GNU", 4) == 0 &&
                desc + header->n_descsz <= end) {
                static const char digits[] = "0123456789abcdef";
                for (std::uint32_t b = 0; b < header->n_descsz; ++b) {
                    const auto byte = static_cast<unsigned char>(desc[b]);
                    *out += digits[byte >> 4];
                    *out += digits[byte & 15];
                }
                return 1;
            }
            note = desc + ((header->n_descsz + 3) & ~3u);
        }
    }
    return 1;  // only the main program counts
}

// Without a build id note: FNV-1a over the executable's bytes.
std::string hash_of_executable() {
    std::ifstream in("/proc/self/exe", std::ios::binary);
    std::uint64_t hash = 14695981039346656037ull;
    char buffer[1 << 16];
    while (in.read(buffer, sizeof buffer) || in.gcount() > 0) {
        for (std::streamsize i = 0; i < in.gcount(); ++i) {
            hash = (hash ^ static_cast<unsigned char>(buffer[i])) * 1099511628211ull;
        }
    }
    char text[32];
    std::snprintf(text, sizeof text, "fnv-%016llx", static_cast<unsigned long long>(hash));
    return text;
}

}  // namespace

const std::string& this_build_id() {
    static const std::string id = [] {
        std::string found;
        ::dl_iterate_phdr(&find_build_id, &found);
        return found.empty() ? hash_of_executable() : found;
    }();
    return id;
}

FunctionId identify(const void* fn, Trampoline tramp) {
    FunctionId id;
    {
        Registry& r = registry();
        std::lock_guard lock(r.mutex);
        if (auto it = r.name_of.find(fn); it != r.name_of.end()) id.name = it->second;
    }
    id.function = locate(fn);
    id.trampoline = locate(reinterpret_cast<const void*>(tramp));
    return id;
}

namespace {
// Set once, as a child that another build started begins; inherited by its forked children.
std::atomic<bool> started_by_other_build{false};
}  // namespace

void note_starter_build(const std::string& build_id) {
    if (!build_id.empty() && build_id != this_build_id()) started_by_other_build.store(true);
}

std::pair<const void*, Trampoline> resolve(const FunctionId& id) {
    if (!id.name.empty()) {
        Registry& r = registry();
        std::lock_guard lock(r.mutex);
        if (auto it = r.by_name.find(id.name); it != r.by_name.end()) {
            return {it->second.function, it->second.trampoline};
        }
    }
    if (started_by_other_build.load() && (id.function.module.empty() || id.trampoline.module.empty())) {
        // Never guess at an address in a binary the sender is not.
        std::string what = id.name.empty() ? std::string("an unregistered function")
                                           : "the function registered as '" + id.name + "' by its sender";
        what += " came from another program (set_executable), and this one (";
        what += this_build_id();
        what += ") can only take functions registered by name in both: ZMP_REGISTER(fn) or ZMP_TASK(name, fn)";
        throw ValueError(what);
    }
    return {find(id.function), reinterpret_cast<Trampoline>(const_cast<void*>(find(id.trampoline)))};
}

}  // namespace zmp::detail
