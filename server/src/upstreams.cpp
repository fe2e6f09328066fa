#include "upstreams.hpp"

#include <algorithm>
#include <stdexcept>

namespace slabd::server {

namespace {

std::int64_t now_ticks() noexcept {
    return std::chrono::steady_clock::now().time_since_epoch().count();
}

std::int64_t to_ticks(std::chrono::milliseconds d) noexcept {
    return std::chrono::duration_cast<std::chrono::steady_clock::duration>(d).count();
}

}  // namespace

upstreams::upstreams(const std::vector<target>& list, config::balance_policy policy,
                     std::chrono::milliseconds fail_timeout)
    : policy_(policy), fail_timeout_(to_ticks(fail_timeout)) {
    if (list.size() > max_slots)
        throw std::invalid_argument("at most " + std::to_string(max_slots) +
                                    " upstreams are supported");
    replace(list, 0);
}

bool upstreams::is_down(const upstream& u) const noexcept {
    const std::int64_t until = u.down_until.load(std::memory_order_relaxed);
    return until != 0 && until > now_ticks();
}

upstreams::upstream* upstreams::pick(std::uint64_t tried_mask) noexcept {
    const std::size_t count = used_.load(std::memory_order_acquire);
    const bool round_robin =
        policy_.load(std::memory_order_relaxed) == config::balance_policy::round_robin;
    const std::uint64_t start = round_robin ? next_.fetch_add(1, std::memory_order_relaxed) : 0;
    // Healthy upstreams first; if every untried one is marked down, try them anyway rather than
    // refuse: the mark is a guess, and a client that gets nowhere is closed either way.
    for (const bool allow_down : {false, true}) {
        upstream* best = nullptr;
        for (std::size_t k = 0; k < count; ++k) {
            const std::size_t i = (start + k) % count;
            upstream& u = slots_[i];
            if ((tried_mask >> i) & 1U) continue;
            if (u.status.load(std::memory_order_acquire) != state::serving) continue;
            if (u.checked_down.load(std::memory_order_relaxed)) continue;
            if (!allow_down && is_down(u)) continue;
            if (round_robin) return &u;
            if (best == nullptr || u.active.load(std::memory_order_relaxed) <
                                       best->active.load(std::memory_order_relaxed))
                best = &u;
        }
        if (best != nullptr) return best;
    }
    return nullptr;
}

void upstreams::mark_failed(upstream& u) noexcept {
    u.connect_failures.fetch_add(1, std::memory_order_relaxed);
    u.failures_in_row.fetch_add(1, std::memory_order_relaxed);
    u.down_until.store(now_ticks() + fail_timeout_.load(std::memory_order_relaxed),
                       std::memory_order_relaxed);
}

void upstreams::set_policy(config::balance_policy policy,
                           std::chrono::milliseconds fail_timeout) noexcept {
    policy_.store(policy, std::memory_order_relaxed);
    fail_timeout_.store(to_ticks(fail_timeout), std::memory_order_relaxed);
}

upstreams::upstream* upstreams::find(const asio::ip::tcp::endpoint& e) noexcept {
    const std::size_t count = used_.load(std::memory_order_relaxed);
    for (std::size_t i = 0; i < count; ++i)
        if (slots_[i].status.load(std::memory_order_relaxed) != state::empty &&
            slots_[i].endpoint == e)
            return &slots_[i];
    return nullptr;
}

upstreams::upstream* upstreams::free_slot() noexcept {
    const std::size_t count = used_.load(std::memory_order_relaxed);
    for (std::size_t i = 0; i < count; ++i) {
        upstream& u = slots_[i];
        const state s = u.status.load(std::memory_order_relaxed);
        if (s == state::empty || (s == state::retired && u.retired_at <= fenced_ &&
                                  u.active.load(std::memory_order_acquire) == 0))
            return &u;
    }
    return count < max_slots ? &slots_[count] : nullptr;
}

upstreams::change upstreams::replace(const std::vector<target>& list, std::uint64_t reload) {
    std::vector<asio::ip::tcp::endpoint> wanted;
    for (const auto& t : list) wanted.push_back(t.endpoint);
    change what;
    // Retire first: a slot freed by an earlier fence may then take a new name in this same call.
    const std::size_t count = used_.load(std::memory_order_relaxed);
    for (std::size_t i = 0; i < count; ++i) {
        upstream& u = slots_[i];
        if (u.status.load(std::memory_order_relaxed) != state::serving) continue;
        if (std::ranges::find(wanted, u.endpoint) != wanted.end()) continue;
        u.retired_at = reload;
        u.status.store(state::retired, std::memory_order_release);
        what.removed.push_back(u.name);
    }
    for (std::size_t i = 0; i < list.size(); ++i) {
        if (upstream* u = find(wanted[i])) {
            // A removed one back before its slot was reused: the same slot, so the same counters.
            if (u->status.load(std::memory_order_relaxed) == state::retired) {
                u->status.store(state::serving, std::memory_order_release);
                what.added.push_back(u->name);
            }
            continue;
        }
        upstream* u = free_slot();
        const std::string& name = list[i].name;
        if (u == nullptr) {
            what.no_room.push_back(name);
            continue;
        }
        u->name = name;
        u->endpoint = wanted[i];
        u->connect_failures.store(0, std::memory_order_relaxed);
        u->down_until.store(0, std::memory_order_relaxed);
        // A new tenant starts up, with no checks behind it; a check still running for the last
        // one is ignored when it ends.
        u->checked_down.store(false, std::memory_order_relaxed);
        u->failures_in_row.store(0, std::memory_order_relaxed);
        u->last_check.store(check_result::none, std::memory_order_relaxed);
        u->last_check_us.store(0, std::memory_order_relaxed);
        u->transitions.store(0, std::memory_order_relaxed);
        u->successes_in_row = 0;
        u->check_in_flight = false;
        ++u->generation;
        u->status.store(state::serving, std::memory_order_release);
        const auto index = static_cast<std::size_t>(u - slots_.data());
        if (index >= used_.load(std::memory_order_relaxed))
            used_.store(index + 1, std::memory_order_release);
        what.added.push_back(name);
    }
    return what;
}

}  // namespace slabd::server
