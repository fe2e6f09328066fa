#include "upstreams.hpp"

#include <stdexcept>

namespace slabd::server {

namespace {
std::int64_t now_ticks() noexcept { return std::chrono::steady_clock::now().time_since_epoch().count(); }
}  // namespace

upstreams::upstreams(const std::vector<config::endpoint>& list, config::balance_policy policy,
                     std::chrono::milliseconds fail_timeout)
    : list_(std::make_unique<upstream[]>(list.size())),
      count_(list.size()),
      policy_(policy),
      fail_timeout_(fail_timeout) {
    // The mask of tried upstreams is 64 bits wide.
    if (list.size() > 64) throw std::invalid_argument("at most 64 upstreams are supported");
    for (std::size_t i = 0; i < list.size(); ++i) {
        list_[i].name = config::to_string(list[i]);
        list_[i].endpoint = {asio::ip::make_address(list[i].host == "localhost" ? "127.0.0.1" : list[i].host),
                             list[i].port};
    }
}

bool upstreams::is_down(const upstream& u) const noexcept {
    const std::int64_t until = u.down_until.load(std::memory_order_relaxed);
    return until != 0 && until > now_ticks();
}

upstreams::upstream* upstreams::pick(std::uint64_t tried_mask) noexcept {
    // Healthy upstreams first; if every untried one is marked down, try them anyway rather than
    // refuse: the mark is a guess, and a client that gets nowhere is closed either way.
    for (const bool allow_down : {false, true}) {
        upstream* best = nullptr;
        if (policy_ == config::balance_policy::round_robin) {
            const std::uint64_t start = next_.fetch_add(1, std::memory_order_relaxed);
            for (std::size_t k = 0; k < count_; ++k) {
                const std::size_t i = (start + k) % count_;
                if ((tried_mask >> i) & 1U) continue;
                if (!allow_down && is_down(list_[i])) continue;
                best = &list_[i];
                break;
            }
        } else {
            for (std::size_t i = 0; i < count_; ++i) {
                if ((tried_mask >> i) & 1U) continue;
                if (!allow_down && is_down(list_[i])) continue;
                if (best == nullptr || list_[i].active.load(std::memory_order_relaxed) <
                                           best->active.load(std::memory_order_relaxed))
                    best = &list_[i];
            }
        }
        if (best != nullptr) return best;
    }
    return nullptr;
}

void upstreams::mark_failed(upstream& u) noexcept {
    u.connect_failures.fetch_add(1, std::memory_order_relaxed);
    u.down_until.store(now_ticks() + fail_timeout_.count(), std::memory_order_relaxed);
}

}  // namespace slabd::server
