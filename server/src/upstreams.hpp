// The proxy's upstream list: which upstream a new client goes to (round-robin or
// least-connections), passive health (an upstream whose connect failed is skipped for a while),
// and changes at reload: an added upstream takes clients at once, a removed one takes no more
// while the relays it has finish.
#pragma once

#include <asio/ip/tcp.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "slabd/config/config.hpp"

namespace slabd::server {

/// Shared by all shards, which only pick and count (atomics, no lock); the control thread alone
/// changes the list. A slot's address and name are rewritten only once no shard can be reading
/// them: the slot was retired, every shard has since run a handler (the fence), and no relay
/// holds it.
class upstreams {
  public:
    /// The tried mask is 64 bits wide.
    static constexpr std::size_t max_slots = 64;

    enum class state : std::uint8_t { empty, serving, retired };
    /// The last active health check's outcome (health_check.hpp).
    enum class check_result : std::uint8_t {
        none,
        ok,
        connect_failed,
        timeout,
        send_failed,
        expect_failed
    };
    static constexpr std::array<const char*, 6> check_result_names{
        "none", "ok", "connect_failed", "timeout", "send_failed", "expect_failed"};

    struct upstream {
        std::string name;
        asio::ip::tcp::endpoint endpoint;
        std::atomic<state> status{state::empty};  // release on change: name and endpoint precede it
        std::atomic<std::uint64_t> active{0};
        std::atomic<std::uint64_t> connect_failures{0};
        std::atomic<std::int64_t> down_until{0};  // steady_clock ticks; 0 = healthy
        std::uint64_t retired_at = 0;             // the reload that retired it; control thread only
        // Active health checks. The checker writes them on the control thread; a shard's failed
        // connect adds to failures_in_row, which the next check turns into a verdict.
        std::atomic<bool> checked_down{false};  // no new clients until `rise` checks pass
        std::atomic<std::uint32_t> failures_in_row{0};
        std::atomic<check_result> last_check{check_result::none};
        std::atomic<std::uint64_t> last_check_us{0};
        std::atomic<std::uint64_t> transitions{0};  // up -> down and down -> up
        std::uint32_t successes_in_row = 0;         // control thread only
        std::uint64_t generation = 0;  // control thread only: a check's result is for this tenant
        bool check_in_flight = false;  // control thread only
    };

    /// One address to relay to: a configured IP address, or one of those a name resolved to.
    struct target {
        std::string name;  // "10.0.0.1:80", or "backend:80 ([2001:db8::1]:80)" for a name's
        asio::ip::tcp::endpoint endpoint;
        friend bool operator==(const target&, const target&) = default;
    };

    /// What a reload changed: names added and removed, and those that found no slot.
    struct change {
        std::vector<std::string> added;
        std::vector<std::string> removed;
        std::vector<std::string> no_room;
    };

    /// Throws std::invalid_argument past max_slots.
    upstreams(const std::vector<target>& list, config::balance_policy policy,
              std::chrono::milliseconds fail_timeout);

    /// The next serving upstream not in `tried_mask` (bit i: slot i) that health checks do not
    /// hold down, those passively marked failed last; nullptr when none is left.
    upstream* pick(std::uint64_t tried_mask) noexcept;
    void mark_failed(upstream& u) noexcept;
    void mark_ok(upstream& u) noexcept {
        u.down_until.store(0, std::memory_order_relaxed);
        u.failures_in_row.store(0, std::memory_order_relaxed);
    }
    [[nodiscard]] std::size_t index_of(const upstream& u) const noexcept {
        return static_cast<std::size_t>(&u - slots_.data());
    }
    [[nodiscard]] bool is_down(const upstream& u) const noexcept;

    // The control thread's side.
    /// Makes `list` the serving set, in one step for the shards: returns what changed. `reload`
    /// numbers this change (a reload or a new resolution); fenced(reload) later says every shard
    /// has seen it.
    change replace(const std::vector<target>& list, std::uint64_t reload);
    /// Every shard has run a handler posted after reload `reload`: slots it retired are
    /// reusable once their relays are gone.
    void fenced(std::uint64_t reload) noexcept { fenced_ = std::max(fenced_, reload); }
    void set_policy(config::balance_policy policy, std::chrono::milliseconds fail_timeout) noexcept;
    /// Slots ever used, serving or retired, in slot order (for the statistics).
    [[nodiscard]] std::size_t slots_used() const noexcept {
        return used_.load(std::memory_order_acquire);
    }
    [[nodiscard]] const upstream& at(std::size_t i) const noexcept { return slots_[i]; }
    [[nodiscard]] upstream& at(std::size_t i) noexcept { return slots_[i]; }

  private:
    upstream* find(const asio::ip::tcp::endpoint& e) noexcept;
    upstream* free_slot() noexcept;

    std::array<upstream, max_slots> slots_;
    std::atomic<std::size_t> used_{0};  // slots [0, used_) have held an upstream
    std::atomic<config::balance_policy> policy_;
    std::atomic<std::int64_t> fail_timeout_;  // steady_clock ticks
    std::atomic<std::uint64_t> next_{0};
    std::uint64_t fenced_ = 0;
};

/// A leg's hold on the upstream it connects or relays to: the upstream's `active` gauge counts
/// exactly the live claims, because only this type moves it, up on claim and down on release.
class upstream_claim {
  public:
    upstream_claim() noexcept = default;
    ~upstream_claim() { release(); }
    upstream_claim(const upstream_claim&) = delete;
    upstream_claim& operator=(const upstream_claim&) = delete;

    void claim(upstreams::upstream& u) noexcept {
        release();
        u.active.fetch_add(1, std::memory_order_relaxed);
        upstream_ = &u;
    }
    /// After this the slot may be reused for another upstream: nothing may touch it any more.
    void release() noexcept {
        if (upstream_ != nullptr) upstream_->active.fetch_sub(1, std::memory_order_release);
        upstream_ = nullptr;
    }
    [[nodiscard]] upstreams::upstream* get() const noexcept { return upstream_; }

  private:
    upstreams::upstream* upstream_ = nullptr;
};

}  // namespace slabd::server
