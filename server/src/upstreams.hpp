// The proxy's upstream list: which upstream a new client goes to (round-robin or
// least-connections) and passive health: an upstream whose connect failed is skipped for a while.
#pragma once

#include <asio/ip/tcp.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "slabd/config/config.hpp"

namespace slabd::server {

/// Shared by all shards; every member is an atomic so picking takes no lock.
class upstreams {
public:
    struct upstream {
        std::string name;
        asio::ip::tcp::endpoint endpoint;
        std::atomic<std::uint64_t> active{0};
        std::atomic<std::uint64_t> connect_failures{0};
        std::atomic<std::int64_t> down_until{0};  // steady_clock ticks; 0 = healthy
    };

    upstreams(const std::vector<config::endpoint>& list, config::balance_policy policy,
              std::chrono::milliseconds fail_timeout);

    /// The next upstream to try, skipping `skip` (already tried for this client) and those marked
    /// down; nullptr when none is left. `attempt` counts tries for this client from 0.
    upstream* pick(std::uint64_t tried_mask) noexcept;
    void mark_failed(upstream& u) noexcept;
    void mark_ok(upstream& u) noexcept { u.down_until.store(0, std::memory_order_relaxed); }
    [[nodiscard]] std::size_t size() const noexcept { return count_; }
    [[nodiscard]] std::size_t index_of(const upstream& u) const noexcept {
        return static_cast<std::size_t>(&u - list_.get());
    }
    [[nodiscard]] const upstream& at(std::size_t i) const noexcept { return list_[i]; }
    [[nodiscard]] bool is_down(const upstream& u) const noexcept;

private:
    std::unique_ptr<upstream[]> list_;
    std::size_t count_;
    config::balance_policy policy_;
    std::chrono::steady_clock::duration fail_timeout_;
    std::atomic<std::uint64_t> next_{0};
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
    void release() noexcept {
        if (upstream_ != nullptr) upstream_->active.fetch_sub(1, std::memory_order_relaxed);
        upstream_ = nullptr;
    }
    [[nodiscard]] upstreams::upstream* get() const noexcept { return upstream_; }

private:
    upstreams::upstream* upstream_ = nullptr;
};

}  // namespace slabd::server
