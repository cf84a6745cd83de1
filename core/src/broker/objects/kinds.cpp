#include "broker/objects/kinds.hpp"

#include <array>

namespace zmp::detail::broker {

const KindEntry* find_kind(Kind kind) {
    // The registry: one line per kind's entry.
    static const KindEntry* const entries[] = {
        &lock_kind, &semaphore_kind, &event_kind, &condition_kind, &barrier_kind, &queue_kind,
        &manager_kind, &managed_mapping_kind, &managed_list_kind, &managed_value_kind,
    };
    static const auto by_kind = [] {
        std::array<const KindEntry*, kLastKind + 1> table{};
        for (const KindEntry* entry : entries)
            for (Kind k : entry->kinds) table[static_cast<std::size_t>(k)] = entry;
        return table;
    }();
    const auto index = static_cast<std::size_t>(kind);
    return index < by_kind.size() ? by_kind[index] : nullptr;
}

}  // namespace zmp::detail::broker
