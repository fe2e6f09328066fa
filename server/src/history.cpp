#include "history.hpp"

#include <algorithm>
#include <nlohmann/json.hpp>

namespace slabd::server {

history::history(std::size_t shards)
    : shards_(shards),
      samples_(depth),
      shard_samples_(depth * shards),
      upstream_samples_(depth * upstream_slots) {}

void history::record(sample server, std::span<const shard_sample> shards,
                     std::span<const upstream_sample> upstreams) noexcept {
    server.seq = ++recorded_;
    samples_[next_] = server;
    std::copy_n(shards.begin(), std::min(shards.size(), shards_),
                shard_samples_.begin() + static_cast<std::ptrdiff_t>(next_ * shards_));
    const auto states =
        upstream_samples_.begin() + static_cast<std::ptrdiff_t>(next_ * upstream_slots);
    std::fill_n(states, upstream_slots, upstream_sample{});
    std::copy_n(upstreams.begin(), std::min(upstreams.size(), upstream_slots), states);
    next_ = (next_ + 1) % depth;
    count_ = std::min(count_ + 1, depth);
}

std::string history::to_json(std::uint64_t since_seq,
                             std::span<const upstream_now> upstreams) const {
    nlohmann::json j = nlohmann::json::object();
    j["interval_ms"] = interval_ms;
    j["depth"] = depth;
    j["last_seq"] = recorded_;
    j["reasons"] = refusal_names;
    nlohmann::json names = nlohmann::json::array();
    const std::size_t slots = std::min(upstreams.size(), upstream_slots);
    for (std::size_t i = 0; i < slots; ++i) names.push_back(upstreams[i].name);
    j["upstreams"] = std::move(names);

    nlohmann::json list = nlohmann::json::array();
    for (std::size_t n = 0; n < count_; ++n) {
        const std::size_t at = (next_ + depth - count_ + n) % depth;
        const sample& s = samples_[at];
        if (s.seq <= since_seq) continue;
        nlohmann::json point = {{"seq", s.seq},
                                {"t", s.unix_ms},
                                {"pool",
                                 {{"in_use", s.pool_in_use},
                                  {"capacity", s.pool_capacity},
                                  {"limit", s.pool_limit},
                                  {"ready_headroom", s.ready_headroom}}}};
        // Refusals are arrays in the order of "reasons": 600 samples stay a small download.
        shard_sample total;
        nlohmann::json shards = nlohmann::json::array();
        for (std::size_t i = 0; i < shards_; ++i) {
            const shard_sample& sh = shard_samples_[at * shards_ + i];
            total.active += sh.active;
            total.accepted += sh.accepted;
            for (std::size_t r = 0; r < refusal_reasons; ++r) total.refused[r] += sh.refused[r];
            total.bytes_in += sh.bytes_in;
            total.bytes_out += sh.bytes_out;
            total.buffers_in_use += sh.buffers_in_use;
            shards.push_back({{"active", sh.active},
                              {"accepted", sh.accepted},
                              {"refused", sh.refused},
                              {"bytes_in", sh.bytes_in},
                              {"bytes_out", sh.bytes_out},
                              {"buffers_in_use", sh.buffers_in_use}});
        }
        point["active"] = total.active;
        point["accepted"] = total.accepted;
        point["refused"] = total.refused;
        point["bytes_in"] = total.bytes_in;
        point["bytes_out"] = total.bytes_out;
        point["buffers_in_use"] = total.buffers_in_use;
        point["shards"] = std::move(shards);
        nlohmann::json states = nlohmann::json::array();
        for (std::size_t i = 0; i < slots; ++i) {
            const upstream_sample& u = upstream_samples_[at * upstream_slots + i];
            const upstream_state shown =
                u.generation == upstreams[i].generation ? u.state : upstream_state::none;
            states.push_back(upstream_state_names[static_cast<std::size_t>(shown)]);
        }
        point["upstreams"] = std::move(states);
        list.push_back(std::move(point));
    }
    j["samples"] = std::move(list);
    return j.dump();
}

}  // namespace slabd::server
