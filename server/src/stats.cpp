#include "slabd/server/stats.hpp"

#include <nlohmann/json.hpp>

#include <string_view>
#include <utility>

namespace slabd::server {

shard_snapshot& shard_snapshot::operator+=(const shard_snapshot& other) noexcept {
#define SLABD_ADD(name, family, label, help) name += other.name;
    SLABD_SHARD_COUNTERS(SLABD_ADD)
    SLABD_SHARD_GAUGES(SLABD_ADD)
#undef SLABD_ADD
#define SLABD_ADD(name, family, label, help, bounds, unit) name += other.name;
    SLABD_SHARD_HISTOGRAMS(SLABD_ADD)
#undef SLABD_ADD
    return *this;
}

std::uint64_t shard_snapshot::refused(refusal_reason why) const noexcept {
    switch (why) {
#define SLABD_CASE(X, reason)    \
    case refusal_reason::reason: \
        return refused_##reason;
        SLABD_REFUSAL_REASONS(SLABD_CASE, )
#undef SLABD_CASE
    }
    return 0;
}

shard_snapshot snapshot(const shard_stats& stats) noexcept {
    shard_snapshot s;
#define SLABD_COPY(name, family, label, help) s.name = stats.name.load(std::memory_order_relaxed);
    SLABD_SHARD_COUNTERS(SLABD_COPY)
    SLABD_SHARD_GAUGES(SLABD_COPY)
#undef SLABD_COPY
#define SLABD_COPY(name, family, label, help, bounds, unit)                        \
    for (std::size_t i = 0; i < s.name.buckets.size(); ++i)                        \
        s.name.buckets[i] = stats.name.buckets[i].load(std::memory_order_relaxed); \
    s.name.sum = stats.name.sum.load(std::memory_order_relaxed);
    SLABD_SHARD_HISTOGRAMS(SLABD_COPY)
#undef SLABD_COPY
    return s;
}

shard_snapshot server_snapshot::total() const noexcept {
    shard_snapshot sum;
    for (const auto& s : shards) sum += s;
    return sum;
}

namespace {

// The pool's gauges and counters, declared once for /stats and /metrics.
struct pool_field {
    const char* key;     // in /stats
    const char* metric;  // in /metrics
    const char* type;
    const char* help;
    std::uint64_t (*get)(const pool::slab_stats&);
};
#define SLABD_POOL_FIELD(field) [](const pool::slab_stats& p) -> std::uint64_t { return p.field; }
constexpr pool_field pool_fields[] = {
    {"block_size", "pool_block_size_bytes", "gauge", "Bytes per block, alignment padding included",
     SLABD_POOL_FIELD(block_size)},
    {"capacity", "pool_capacity_blocks", "gauge",
     "Blocks the pool's memory holds now (grown by reload, never shrunk)",
     SLABD_POOL_FIELD(capacity)},
    {"limit", "pool_limit_blocks", "gauge",
     "Blocks that may be in use at once: the admission limit", SLABD_POOL_FIELD(limit)},
    {"reserved", "pool_reserved_blocks", "gauge",
     "Blocks the pool may grow to at a reload without a restart", SLABD_POOL_FIELD(reserved)},
    {"in_use", "pool_in_use_blocks", "gauge", "Blocks handed out", SLABD_POOL_FIELD(in_use)},
    {"free", "pool_free_blocks", "gauge", "Blocks that may still be handed out under the limit",
     SLABD_POOL_FIELD(free)},
    {"high_water", "pool_high_water_blocks", "gauge", "Most blocks in use at once since start",
     SLABD_POOL_FIELD(high_water)},
    {"slab_bytes", "pool_slab_bytes", "gauge", "Bytes of the slabs the blocks are carved from",
     SLABD_POOL_FIELD(slab_bytes)},
    {"allocs", "pool_allocs_total", "counter", "Blocks handed out since start",
     SLABD_POOL_FIELD(allocs)},
    {"failed_allocs", "pool_failed_allocs_total", "counter",
     "Allocations that found no block under the limit", SLABD_POOL_FIELD(failed_allocs)},
};
#undef SLABD_POOL_FIELD

nlohmann::json pool_json(const pool::slab_stats& p) {
    nlohmann::json j = nlohmann::json::object();
    for (const auto& f : pool_fields) j[f.key] = f.get(p);
    j["rejected_frees"] = {{"double", p.rejected_double_frees},
                           {"foreign", p.rejected_foreign_frees},
                           {"misaligned", p.rejected_misaligned_frees}};
    return j;
}

nlohmann::json reload_json(const reload_snapshot& r) {
    return {{"applied", r.applied}, {"rejected", r.rejected},           {"last", r.last},
            {"changed", r.changed}, {"needs_restart", r.needs_restart}, {"error", r.error}};
}

nlohmann::json refused_json(const shard_snapshot& t) {
    nlohmann::json j = nlohmann::json::object();
    for (std::size_t i = 0; i < refusal_reasons; ++i)
        j[refusal_names[i]] = t.refused(static_cast<refusal_reason>(i));
    return j;
}

nlohmann::json limits_json(const limits_snapshot& l) {
    nlohmann::json top = nlohmann::json::array();
    for (const auto& source : l.top_sources)
        top.push_back({{"source", source.name}, {"connections", source.connections}});
    return {{"max_per_source", l.max_per_source},
            {"accept_rate", l.accept_rate},
            {"sources", l.sources},
            {"top_sources", std::move(top)}};
}

nlohmann::json admin_json(const admin_snapshot& a) {
    nlohmann::json j = nlohmann::json::object();
#define SLABD_ADMIN_FIELD(field, family, type, help) j[#field] = a.field;
    SLABD_ADMIN_STATS(SLABD_ADMIN_FIELD)
#undef SLABD_ADMIN_FIELD
    return j;
}

/// `value` in units of 1/`unit`, as an exact decimal: 100 us in seconds is "0.0001".
std::string decimal(std::uint64_t value, std::uint64_t unit) {
    std::string out = std::to_string(value / unit);
    std::string fraction;
    for (std::uint64_t rest = value % unit, place = unit / 10; rest != 0 && place != 0;
         rest %= place, place /= 10)
        fraction += static_cast<char>('0' + rest / place);
    return fraction.empty() ? out : out + "." + fraction;
}

/// {"buckets": [{"le": 0.0001, "count": 3}, ..., {"le": "+Inf", "count": 9}], "sum", "count"}:
/// cumulative counts, as Prometheus has them.
template <std::size_t N>
nlohmann::json histogram_json(const histogram_snapshot<N>& h,
                              const std::array<std::uint64_t, N>& bounds, std::uint64_t unit) {
    nlohmann::json buckets = nlohmann::json::array();
    std::uint64_t below = 0;
    for (std::size_t i = 0; i < N; ++i) {
        below += h.buckets[i];
        buckets.push_back(
            {{"le", static_cast<double>(bounds[i]) / static_cast<double>(unit)}, {"count", below}});
    }
    buckets.push_back({{"le", "+Inf"}, {"count", h.count()}});
    return {{"buckets", std::move(buckets)},
            {"sum", static_cast<double>(h.sum) / static_cast<double>(unit)},
            {"count", h.count()}};
}

nlohmann::json histograms_json(const shard_snapshot& t) {
    nlohmann::json j = nlohmann::json::object();
#define SLABD_HISTOGRAM(name, family, label, help, bounds, unit) \
    j[#name] = histogram_json(t.name, bounds, unit);
    SLABD_SHARD_HISTOGRAMS(SLABD_HISTOGRAM)
#undef SLABD_HISTOGRAM
    return j;
}

nlohmann::json shard_json(const shard_snapshot& s) {
    nlohmann::json j;
#define SLABD_FIELD(name, family, label, help) j[#name] = s.name;
    SLABD_SHARD_COUNTERS(SLABD_FIELD)
    SLABD_SHARD_GAUGES(SLABD_FIELD)
#undef SLABD_FIELD
    j["refused"] = s.refused();
    return j;
}

}  // namespace

std::string to_json(const server_snapshot& s) {
    const shard_snapshot t = s.total();
    nlohmann::json shards = nlohmann::json::array();
    for (std::size_t i = 0; i < s.shards.size(); ++i) {
        nlohmann::json one = shard_json(s.shards[i]);
        one["shard"] = i;
        shards.push_back(std::move(one));
    }
    nlohmann::json upstreams = nlohmann::json::array();
    for (const auto& u : s.upstreams)
        upstreams.push_back({{"name", u.name},
                             {"active", u.active},
                             {"connect_failures", u.connect_failures},
                             {"state", u.removed ? "removed"
                                       : u.down  ? "down"
                                                 : "up"},
                             {"health",
                              {{"down", u.checked_down},
                               {"last_check", u.last_check},
                               {"last_check_ms", static_cast<double>(u.last_check_us) / 1000.0},
                               {"failures_in_row", u.failures_in_row},
                               {"transitions", u.check_transitions}}}});
    const nlohmann::json j = {
        {"server",
         {{"version", s.version},
          {"mode", s.mode},
          {"uptime_seconds", s.uptime_seconds},
          {"threads", s.threads},
          {"draining", s.draining}}},
        {"pool", pool_json(s.pool)},
        {"buffers", pool_json(s.buffers)},
        {"connections",
         {{"accepted", t.accepted},
          {"refused", t.refused()},
          {"refused_by_reason", refused_json(t)},
          {"paused", t.paused},
          {"active", t.active},
          {"accept_errors", t.accept_errors},
          {"buffer_waits", t.buffer_waits},
          {"closed",
           {{"client_eof", t.closed_client_eof},
            {"idle_timeout", t.closed_idle_timeout},
            {"error", t.closed_error},
            {"upstream_failure", t.closed_upstream_failure},
            {"shutdown", t.closed_shutdown},
            {"evicted", t.closed_evicted}}}}},
        {"bytes", {{"in", t.bytes_in}, {"out", t.bytes_out}, {"spliced", t.bytes_spliced}}},
        {"splice_pipes", {{"in_use", t.splice_pipes_in_use}, {"lost", t.splice_pipes_lost}}},
        {"linger",
         {{"active", t.lingering},
          {"timeouts", t.linger_timeouts},
          {"overflows", t.linger_overflows}}},
        {"connection_histograms", histograms_json(t)},
        {"connection_log", {{"skipped", t.connection_log_skipped}}},
        {"upstream_connect_failures", t.upstream_connect_failures},
        {"proxy_protocol",
         {{"headers_received", t.proxy_headers_received}, {"headers_sent", t.proxy_headers_sent}}},
        {"op_memory_overflows", s.op_memory_overflows},
        {"upstream_resolve_failures", s.upstream_resolve_failures},
        {"admin", admin_json(s.admin)},
        {"ready", ready(s)},
        {"ready_headroom", s.ready_headroom},
        {"limits", limits_json(s.limits)},
        {"reload", reload_json(s.reload)},
        {"shards", std::move(shards)},
        {"upstreams", std::move(upstreams)},
    };
    return j.dump();
}

bool ready(const server_snapshot& s) noexcept {
    return !s.draining && s.pool.free >= s.ready_headroom;
}

namespace {

/// Writes metric families, each with its HELP and TYPE once, in the text format 0.0.4.
class prometheus_writer {
  public:
    void family(std::string_view name, std::string_view type, std::string_view help) {
        out_ += "# HELP slabd_";
        out_ += name;
        out_ += ' ';
        out_ += help;
        out_ += "\n# TYPE slabd_";
        out_ += name;
        out_ += ' ';
        out_ += type;
        out_ += '\n';
    }
    void sample(std::string_view name, std::string_view labels, double value) {
        sample_text(name, labels, fmt_number(value));
    }
    /// A value already written out, such as an exact decimal that a double would round.
    void sample_text(std::string_view name, std::string_view labels, std::string_view value) {
        out_ += "slabd_";
        out_ += name;
        if (!labels.empty()) {
            out_ += '{';
            out_ += labels;
            out_ += '}';
        }
        out_ += ' ';
        out_ += value;
        out_ += '\n';
    }
    std::string take() { return std::move(out_); }

  private:
    static std::string fmt_number(double v) {
        if (v == static_cast<double>(static_cast<std::uint64_t>(v)))
            return std::to_string(static_cast<std::uint64_t>(v));
        return std::to_string(v);
    }
    std::string out_;
};

std::string label_value(std::string_view v) {
    std::string out;
    for (const char c : v) {
        if (c == '\\' || c == '"') out += '\\';
        if (c == '\n') {
            out += "\\n";
            continue;
        }
        out += c;
    }
    return out;
}

}  // namespace

std::string to_prometheus(const server_snapshot& s) {
    prometheus_writer w;
    w.family("info", "gauge", "Version and mode of this slabd; always 1");
    w.sample("info",
             "version=\"" + label_value(s.version) + "\",mode=\"" + label_value(s.mode) + "\"", 1);
    w.family("uptime_seconds", "gauge", "Seconds since start");
    w.sample("uptime_seconds", "", s.uptime_seconds);
    w.family("ready", "gauge", "1 while /readyz answers 200");
    w.sample("ready", "", ready(s) ? 1 : 0);
    w.family("draining", "gauge", "1 after SIGTERM or SIGINT, while connections finish");
    w.sample("draining", "", s.draining ? 1 : 0);
    w.family("op_memory_overflows_total", "counter",
             "Asio operations too large for their in-block memory (heap fallback); 0 when healthy");
    w.sample("op_memory_overflows_total", "", static_cast<double>(s.op_memory_overflows));

#define SLABD_ADMIN_METRIC(field, metric, type, help) \
    w.family(metric, #type, help);                    \
    w.sample(metric, "", static_cast<double>(s.admin.field));
    SLABD_ADMIN_STATS(SLABD_ADMIN_METRIC)
#undef SLABD_ADMIN_METRIC

    for (const auto& f : pool_fields) {
        w.family(f.metric, f.type, f.help);
        w.sample(f.metric, "pool=\"connections\"", static_cast<double>(f.get(s.pool)));
        w.sample(f.metric, "pool=\"buffers\"", static_cast<double>(f.get(s.buffers)));
    }
    w.family("pool_rejected_frees_total", "counter",
             "Frees refused: double, foreign or misaligned pointers");
    for (const auto& [label, p] :
         {std::pair{"connections", &s.pool}, std::pair{"buffers", &s.buffers}}) {
        const std::string pool_label = std::string("pool=\"") + label + "\",kind=";
        w.sample("pool_rejected_frees_total", pool_label + "\"double\"",
                 static_cast<double>(p->rejected_double_frees));
        w.sample("pool_rejected_frees_total", pool_label + "\"foreign\"",
                 static_cast<double>(p->rejected_foreign_frees));
        w.sample("pool_rejected_frees_total", pool_label + "\"misaligned\"",
                 static_cast<double>(p->rejected_misaligned_frees));
    }

    // Shard counters, generated from the declared list: one family per metric name.
    std::string_view previous_family;
    auto shard_metric = [&](std::string_view family, std::string_view suffix, std::string_view type,
                            std::string_view label, std::string_view help, auto value_of) {
        const std::string name = std::string(family) + std::string(suffix);
        if (family != previous_family) w.family(name, type, help);
        previous_family = family;
        for (std::size_t i = 0; i < s.shards.size(); ++i) {
            std::string labels = "shard=\"" + std::to_string(i) + "\"";
            if (!label.empty()) labels += "," + std::string(label);
            w.sample(name, labels, static_cast<double>(value_of(s.shards[i])));
        }
    };
#define SLABD_COUNTER(field_name, family, label, help)     \
    shard_metric(family, "_total", "counter", label, help, \
                 [](const shard_snapshot& x) { return x.field_name; });
#define SLABD_GAUGE(field_name, family, label, help) \
    shard_metric(family, "", "gauge", label, help,   \
                 [](const shard_snapshot& x) { return x.field_name; });
    SLABD_SHARD_COUNTERS(SLABD_COUNTER)
    SLABD_SHARD_GAUGES(SLABD_GAUGE)
#undef SLABD_COUNTER
#undef SLABD_GAUGE

    // Histograms, summed over the shards: per-shard buckets would multiply the series for little.
    const shard_snapshot t = s.total();
    previous_family = {};
    auto histogram_metric = [&](std::string_view family, std::string_view label,
                                std::string_view help, const auto& h, const auto& bounds,
                                std::uint64_t unit) {
        const std::string name(family);
        if (family != previous_family) w.family(name, "histogram", help);
        previous_family = family;
        const std::string labels = label.empty() ? "" : std::string(label) + ",";
        std::uint64_t below = 0;
        for (std::size_t i = 0; i < bounds.size(); ++i) {
            below += h.buckets[i];
            w.sample(name + "_bucket", labels + "le=\"" + decimal(bounds[i], unit) + "\"",
                     static_cast<double>(below));
        }
        w.sample(name + "_bucket", labels + "le=\"+Inf\"", static_cast<double>(h.count()));
        w.sample_text(name + "_sum", label, decimal(h.sum, unit));
        w.sample(name + "_count", label, static_cast<double>(h.count()));
    };
#define SLABD_HISTOGRAM(name, family, label, help, bounds, unit) \
    histogram_metric(family, label, help, t.name, bounds, unit);
    SLABD_SHARD_HISTOGRAMS(SLABD_HISTOGRAM)
#undef SLABD_HISTOGRAM

    w.family("upstream_resolve_failures_total", "counter",
             "Lookups of upstream names that failed (the last addresses were kept)");
    w.sample("upstream_resolve_failures_total", "",
             static_cast<double>(s.upstream_resolve_failures));
    // Each upstream's metrics, one family each, labelled by the upstream's name.
    struct upstream_metric {
        const char* family;
        const char* type;
        const char* help;
        double (*value)(const upstream_snapshot&);
    };
    static constexpr upstream_metric upstream_metrics[] = {
        {"upstream_active_connections", "gauge", "Clients relayed to this upstream now",
         [](const upstream_snapshot& u) { return static_cast<double>(u.active); }},
        {"upstream_connect_failures_total", "counter",
         "Failed or timed-out connects to this upstream",
         [](const upstream_snapshot& u) { return static_cast<double>(u.connect_failures); }},
        {"upstream_checked_down", "gauge", "1 while active health checks hold the upstream down",
         [](const upstream_snapshot& u) { return u.checked_down ? 1.0 : 0.0; }},
        {"upstream_check_transitions_total", "counter",
         "Times health checks took the upstream down or brought it up",
         [](const upstream_snapshot& u) { return static_cast<double>(u.check_transitions); }},
        {"upstream_last_check_seconds", "gauge", "How long the last health check took",
         [](const upstream_snapshot& u) { return static_cast<double>(u.last_check_us) / 1e6; }},
        {"upstream_up", "gauge",
         "0 while the upstream is held down by health checks or marked failed and skipped",
         [](const upstream_snapshot& u) { return u.down ? 0.0 : 1.0; }},
        {"upstream_removed", "gauge", "1 while a removed upstream's relays finish",
         [](const upstream_snapshot& u) { return u.removed ? 1.0 : 0.0; }},
    };
    if (!s.upstreams.empty()) {
        for (const auto& m : upstream_metrics) {
            w.family(m.family, m.type, m.help);
            for (const auto& u : s.upstreams)
                w.sample(m.family, "upstream=\"" + label_value(u.name) + "\"", m.value(u));
        }
    }
    w.family("reloads_total", "counter",
             "Reloads (SIGHUP) by outcome: applied, or rejected and nothing changed");
    w.sample("reloads_total", "outcome=\"applied\"", static_cast<double>(s.reload.applied));
    w.sample("reloads_total", "outcome=\"rejected\"", static_cast<double>(s.reload.rejected));
    w.family("reload_needs_restart_settings", "gauge",
             "Settings changed in the file that only a restart applies");
    w.sample("reload_needs_restart_settings", "",
             static_cast<double>(s.reload.needs_restart.size()));
    return w.take();
}

}  // namespace slabd::server
