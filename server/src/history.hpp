// The admin page's memory: one sample a second of what /stats shows — the pool, and each shard's
// accepts, refusals by reason, bytes and buffers, and each upstream's state — for the last ten
// minutes. The rings are allocated at start-up; recording a sample copies numbers into them and
// allocates nothing, so keeping history costs the same at any load.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "slabd/pool/slab.hpp"
#include "slabd/server/stats.hpp"

namespace slabd::server {

class history {
  public:
    static constexpr std::size_t depth = 600;          // samples kept: 10 minutes at one a second
    static constexpr std::size_t interval_ms = 1000;   // between samples
    static constexpr std::size_t upstream_slots = 32;  // the first 32 upstream slots are kept

    /// What an upstream slot was doing at a sample.
    enum class upstream_state : std::uint8_t { none, up, down, removed };
    static constexpr std::array<const char*, 4> upstream_state_names{"none", "up", "down",
                                                                     "removed"};

    /// One shard at one sample; counters are running totals, so a rate is a difference.
    struct shard_sample {
        std::uint64_t active = 0;
        std::uint64_t accepted = 0;
        std::array<std::uint64_t, refusal_reasons> refused{};
        std::uint64_t bytes_in = 0;
        std::uint64_t bytes_out = 0;
        std::uint64_t buffers_in_use = 0;
    };

    /// The whole server at one sample, besides its shards' and upstreams'.
    struct sample {
        std::int64_t unix_ms = 0;
        std::uint64_t pool_in_use = 0;
        std::uint64_t pool_capacity = 0;
        std::uint64_t pool_limit = 0;  // the admission limit
        std::uint64_t ready_headroom = 0;
    };

    explicit history(std::size_t shards);

    /// Keeps one sample, overwriting the oldest once `depth` are kept. `shards` must hold one
    /// entry per shard; `upstreams` at most `upstream_slots`, by slot.
    void record(const sample& server, std::span<const shard_sample> shards,
                std::span<const upstream_state> upstreams) noexcept;

    /// Samples kept, oldest first, taken after `since_unix_ms` (0: all), as the JSON of
    /// GET /stats/history. `upstream_names` names the slots as they are now ("" for an empty one).
    [[nodiscard]] std::string to_json(std::int64_t since_unix_ms,
                                      std::span<const std::string> upstream_names) const;

    [[nodiscard]] std::size_t size() const noexcept { return count_; }

  private:
    std::size_t shards_;
    std::vector<sample> samples_;                  // depth
    std::vector<shard_sample> shard_samples_;      // depth x shards
    std::vector<upstream_state> upstream_states_;  // depth x upstream_slots
    std::size_t next_ = 0;                         // the slot the next sample goes to
    std::size_t count_ = 0;
};

}  // namespace slabd::server
