#include "slabd/server/stats.hpp"

#include <nlohmann/json.hpp>

#include <string_view>
#include <utility>

namespace slabd::server {

shard_snapshot& shard_snapshot::operator+=(const shard_snapshot& other) noexcept {
#define SLABD_ADD(name, family, label, json, help) name += other.name;
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
#define SLABD_COPY(name, family, label, json, help) \
    s.name = stats.name.load(std::memory_order_relaxed);
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

nlohmann::json pool_json(const pool::slab_stats& p) {
    nlohmann::json j = nlohmann::json::object();
#define SLABD_POOL_FIELD(field, metric, label, pointer, type, help) \
    j[nlohmann::json::json_pointer(pointer)] = p.field;
    SLABD_SLAB_STATS(SLABD_POOL_FIELD)
#undef SLABD_POOL_FIELD
    return j;
}

nlohmann::json reload_json(const reload_snapshot& r) {
    return {{"applied", r.applied}, {"rejected", r.rejected},           {"last", r.last},
            {"changed", r.changed}, {"needs_restart", r.needs_restart}, {"error", r.error}};
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
#define SLABD_FIELD(name, family, label, json, help) j[#name] = s.name;
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
    for (const auto& u : s.upstreams) {
        nlohmann::json one = {{"name", u.name},
                              {"state", u.removed ? "removed"
                                        : u.down  ? "down"
                                                  : "up"},
                              {"health", {{"last_check", u.last_check}}}};
#define SLABD_UPSTREAM_FIELD(metric, type, pointer, help, value) \
    one[nlohmann::json::json_pointer(pointer)] = value;
        SLABD_UPSTREAM_STATS(SLABD_UPSTREAM_FIELD)
#undef SLABD_UPSTREAM_FIELD
        upstreams.push_back(std::move(one));
    }
    nlohmann::json j = {
        {"server",
         {{"version", s.version},
          {"mode", s.mode},
          {"uptime_seconds", s.uptime_seconds},
          {"threads", s.threads},
          {"draining", s.draining}}},
        {"pool", pool_json(s.pool)},
        {"buffers", pool_json(s.buffers)},
        {"connection_histograms", histograms_json(t)},
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
    // The shards' totals, each where its declaration says.
#define SLABD_TOTAL(name, family, label, pointer, help) \
    j[nlohmann::json::json_pointer(pointer)] = t.name;
    SLABD_SHARD_COUNTERS(SLABD_TOTAL)
    SLABD_SHARD_GAUGES(SLABD_TOTAL)
#undef SLABD_TOTAL
    j["connections"]["refused"] = t.refused();
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

    // The two pools' fields, one family per metric name, each pool a label.
    std::string_view pool_family;
    auto pool_metric = [&](std::string_view family, std::string_view type, std::string_view label,
                           std::string_view help, std::size_t connections, std::size_t buffers) {
        const std::string name = std::string(family) + (type == "counter" ? "_total" : "");
        if (family != pool_family) w.family(name, type, help);
        pool_family = family;
        const std::string extra = label.empty() ? "" : "," + std::string(label);
        w.sample(name, "pool=\"connections\"" + extra, static_cast<double>(connections));
        w.sample(name, "pool=\"buffers\"" + extra, static_cast<double>(buffers));
    };
#define SLABD_POOL_METRIC(field, metric, label, json, type, help) \
    pool_metric(metric, #type, label, help, s.pool.field, s.buffers.field);
    SLABD_SLAB_STATS(SLABD_POOL_METRIC)
#undef SLABD_POOL_METRIC

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
#define SLABD_COUNTER(field_name, family, label, json, help) \
    shard_metric(family, "_total", "counter", label, help,   \
                 [](const shard_snapshot& x) { return x.field_name; });
#define SLABD_GAUGE(field_name, family, label, json, help) \
    shard_metric(family, "", "gauge", label, help,         \
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
    if (!s.upstreams.empty()) {
#define SLABD_UPSTREAM_METRIC(metric, type, pointer, help, value)                         \
    {                                                                                     \
        const std::string name =                                                          \
            std::string(metric) + (#type == std::string_view("counter") ? "_total" : ""); \
        w.family(name, #type, help);                                                      \
        for (const auto& u : s.upstreams)                                                 \
            w.sample(name, "upstream=\"" + label_value(u.name) + "\"",                    \
                     static_cast<double>(value));                                         \
    }
        SLABD_UPSTREAM_STATS(SLABD_UPSTREAM_METRIC)
#undef SLABD_UPSTREAM_METRIC
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
