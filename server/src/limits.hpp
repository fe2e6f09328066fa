// Admission limits checked right after accept, before a pool block is taken (HAProxy's rule:
// reject before allocating): connections held per source, and newcomers per second. Both are
// shared by every shard, so a limit is exact however the kernel spreads clients over them.
#pragma once

#include <asio/ip/address.hpp>
#include <asio/ip/tcp.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

namespace slabd::server {

/// A client's source: its address cut to the configured prefix, IPv4 (and IPv4-mapped IPv6)
/// as ::ffff:a.b.c.d, so the two spellings of one client are one source.
struct source_key {
    std::array<std::uint8_t, 16> bytes{};
    friend bool operator==(const source_key&, const source_key&) = default;
};

/// `address` cut to `v4_prefix` bits (IPv4, IPv4-mapped) or `v6_prefix` bits (other IPv6).
source_key make_source_key(const asio::ip::address& address, unsigned v4_prefix,
                           unsigned v6_prefix) noexcept;
/// make_source_key(client's address, 32, 128), read straight from the socket address: one per
/// accept, so no asio::ip::address is built for it.
source_key whole_source_key(const asio::ip::tcp::endpoint& client) noexcept;
/// Whether `key` is an IPv4 client's (stored as ::ffff:a.b.c.d).
[[nodiscard]] bool is_v4(const source_key& key) noexcept;
/// The source of the client whose whole key (prefixes 32 and 128) is `whole`, cut to
/// `prefix_bits` of its 128 (an IPv4 client's /N is 96 + N).
source_key cut_source_key(const source_key& whole, unsigned prefix_bits) noexcept;
/// The bits of a key that make_source_key keeps for `whole`'s client.
unsigned source_bits(const source_key& whole, unsigned v4_prefix, unsigned v6_prefix) noexcept;
/// The source as an operator reads it: "192.0.2.7", "192.0.2.0/24", "2001:db8::/64".
std::string to_string(const source_key& key, unsigned v4_prefix, unsigned v6_prefix);

/// A network allowed to speak for its clients (accept_proxy's trusted_sources). An IPv4 network
/// holds IPv4 and IPv4-mapped clients; an IPv6 one, the other IPv6 clients.
struct network {
    source_key base;
    unsigned prefix = 0;
    bool v4 = false;

    /// From the canonical "ADDRESS/PREFIX" that config::Config holds.
    static network parse(const std::string& text);
    [[nodiscard]] bool contains(const asio::ip::address& address) const noexcept;
};

/// Whether any of `networks` holds `address`.
[[nodiscard]] bool trusted(const std::vector<network>& networks,
                           const asio::ip::address& address) noexcept;

/// Connections held per source, in a table sized once at start-up: open addressing with linear
/// probing and backward-shift deletion (no tombstones, so it never degrades with churn). A source
/// holds an entry only while it holds a connection, so with twice as many entries as the pool has
/// blocks the table stays at most half full and acquire is a probe or two.
class source_table {
  public:
    /// `limit` connections per source (0: off); room for `max_sources` sources holding
    /// connections. The table is reserved, not touched, until a source is counted.
    source_table(std::uint32_t limit, std::size_t max_sources);
    ~source_table();
    source_table(const source_table&) = delete;
    source_table& operator=(const source_table&) = delete;

    enum class verdict : std::uint8_t { admitted, over_limit, table_full };
    /// Counts one more connection from `key` unless that would pass the limit.
    [[nodiscard]] verdict acquire(const source_key& key) noexcept;
    /// Gives back one connection acquire() admitted.
    void release(const source_key& key) noexcept;

    struct holder {
        source_key key;
        std::uint32_t connections;
    };
    /// The `n` sources holding the most connections, most first (a scan: for the admin thread).
    [[nodiscard]] std::vector<holder> top(std::size_t n) const;
    [[nodiscard]] std::size_t sources() const noexcept;
    [[nodiscard]] std::uint32_t limit() const noexcept {
        return limit_.load(std::memory_order_relaxed);
    }
    /// 0 turns counting off; sources already counted are still given back as they close.
    void set_limit(std::uint32_t limit) noexcept { limit_.store(limit, std::memory_order_relaxed); }

  private:
    struct entry {
        source_key key;
        std::uint32_t connections;  // 0: the slot is empty
    };
    [[nodiscard]] std::size_t home(const source_key& key) const noexcept;

    std::atomic<std::uint32_t> limit_;
    std::size_t mask_;
    entry* entries_;
    std::size_t mapping_bytes_;
    std::size_t used_ = 0;
    mutable std::mutex mutex_;  // taken once per accept and once per close: never per byte
};

/// Newcomers per second over all shards: a token bucket holding up to `burst` tokens, refilled at
/// `rate` a second.
class accept_rate_limiter {
  public:
    using clock = std::chrono::steady_clock;
    /// `rate` 0: off.
    accept_rate_limiter(std::uint32_t rate, std::uint32_t burst) noexcept;
    /// A new rate and burst (reload); the bucket keeps what it holds, up to the new burst.
    void configure(std::uint32_t rate, std::uint32_t burst) noexcept;
    [[nodiscard]] bool enabled() const noexcept { return enabled_.load(std::memory_order_relaxed); }
    /// Takes a token if one is there.
    [[nodiscard]] bool try_take(clock::time_point now) noexcept;
    /// How long until the next token (zero if one is there now).
    [[nodiscard]] clock::duration until_next(clock::time_point now) noexcept;

  private:
    void refill(clock::time_point now) noexcept;

    std::atomic<bool> enabled_{false};
    double rate_per_ns_ = 0;
    double burst_ = 1;
    double tokens_ = 1;
    clock::time_point last_;
    std::mutex mutex_;
};

}  // namespace slabd::server
