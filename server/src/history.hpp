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
    static constexpr std::size_t upstream_slots = 64;  // every slot (upstreams::max_slots)

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

    /// An upstream slot at one sample. A slot is reused by a later upstream: the generation
    /// (upstreams' count of the slot's tenants) tells whose state it was.
    struct upstream_sample {
        upstream_state state = upstream_state::none;
        std::uint64_t generation = 0;
    };
    /// An upstream slot as it is now, for naming the samples that belong to its tenant.
    struct upstream_now {
        std::string name;  // "" for an empty slot
        std::uint64_t generation = 0;
    };

    /// The whole server at one sample, besides its shards' and upstreams'.
    struct sample {
        std::uint64_t seq = 0;  // numbered by record(): the cursor, since the wall clock may step
        std::int64_t unix_ms = 0;
        std::uint64_t pool_in_use = 0;
        std::uint64_t pool_capacity = 0;
        std::uint64_t pool_limit = 0;  // the admission limit
        std::uint64_t ready_headroom = 0;
    };

    explicit history(std::size_t shards);

    /// Keeps one sample, numbered next (its `seq` is set here), overwriting the oldest once
    /// `depth` are kept. `shards` must hold one entry per shard; `upstreams` at most
    /// `upstream_slots`, by slot.
    void record(sample server, std::span<const shard_sample> shards,
                std::span<const upstream_sample> upstreams) noexcept;

    /// Samples kept, oldest first, numbered after `since_seq` (0: all), as the JSON of
    /// GET /stats/history. `upstreams` are the slots as they are now: a sample's state for a slot
    /// shows only if it was the current tenant's ("none" before it came).
    [[nodiscard]] std::string to_json(std::uint64_t since_seq,
                                      std::span<const upstream_now> upstreams) const;

    [[nodiscard]] std::size_t size() const noexcept { return count_; }

  private:
    std::size_t shards_;
    std::vector<sample> samples_;                    // depth
    std::vector<shard_sample> shard_samples_;        // depth x shards
    std::vector<upstream_sample> upstream_samples_;  // depth x upstream_slots
    std::size_t next_ = 0;                           // the slot the next sample goes to
    std::size_t count_ = 0;
    std::uint64_t recorded_ = 0;  // samples recorded so far: the last one's seq
};

}  // namespace slabd::server
