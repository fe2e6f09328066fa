#include "top.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <initializer_list>
#include <optional>
#include <string_view>
#include <vector>

#include "slabd/server/stats.hpp"

namespace slabd::server {
namespace {

using nlohmann::json;

// ---- the frame ------------------------------------------------------------------------------

/// The value at `path` in `j`; null when a step is missing or not an object, since the fields
/// /stats has grow while older and newer daemons stay in service.
const json* find(const json& j, std::initializer_list<const char*> path) {
    const json* at = &j;
    for (const char* key : path) {
        if (!at->is_object()) return nullptr;
        const auto it = at->find(key);
        if (it == at->end()) return nullptr;
        at = &*it;
    }
    return at;
}

std::string text(const json* j) {
    return j != nullptr && j->is_string() ? j->get<std::string>() : "-";
}

std::string count(const json* j) {
    if (j == nullptr || !j->is_number()) return "-";
    return j->is_number_float() ? fmt::format("{:.1f}", j->get<double>()) : j->dump();
}

std::optional<double> number(const json* j) {
    if (j == nullptr || !j->is_number()) return std::nullopt;
    return j->get<double>();
}

bool is_true(const json* j) {
    return j != nullptr && j->is_boolean() && j->get<bool>();
}

std::optional<double> rate(const json* before, const json* now, double elapsed) {
    const auto a = number(before);
    const auto b = number(now);
    if (!a || !b || *b < *a || elapsed <= 0) return std::nullopt;
    return (*b - *a) / elapsed;
}

std::string human_bytes(double n) {
    constexpr std::string_view units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    std::size_t unit = 0;
    while (n >= 1024 && unit + 1 < std::size(units)) {
        n /= 1024;
        ++unit;
    }
    return unit == 0 ? fmt::format("{:.0f} B", n) : fmt::format("{:.1f} {}", n, units[unit]);
}

std::string uptime(const json* seconds) {
    const auto given = number(seconds);
    if (!given) return "-";
    const auto s = static_cast<std::uint64_t>(std::max(0.0, *given));
    if (s >= 86400) return fmt::format("{}d{:02}h{:02}m", s / 86400, s / 3600 % 24, s / 60 % 60);
    if (s >= 3600) return fmt::format("{}h{:02}m{:02}s", s / 3600, s / 60 % 60, s % 60);
    if (s >= 60) return fmt::format("{}m{:02}s", s / 60, s % 60);
    return fmt::format("{}s", s);
}

/// The same object in two snapshots, for counts from the current one and rates between them.
struct snapshots {
    const json& before;
    const json& now;
    double elapsed;

    [[nodiscard]] std::string total(std::initializer_list<const char*> path) const {
        return count(find(now, path));
    }
    [[nodiscard]] std::string per_second(std::initializer_list<const char*> path) const {
        const auto r = rate(find(before, path), find(now, path), elapsed);
        return r ? fmt::format("{:.1f}", *r) : "-";
    }
    [[nodiscard]] std::string bytes(std::initializer_list<const char*> path) const {
        const auto n = number(find(now, path));
        return n ? human_bytes(*n) : "-";
    }
    [[nodiscard]] std::string bytes_per_second(std::initializer_list<const char*> path) const {
        const auto r = rate(find(before, path), find(now, path), elapsed);
        return r ? human_bytes(*r) + "/s" : "-";
    }
};

const json& none() {
    static const json null;
    return null;
}

const json& element(const json* array, std::size_t i) {
    return array != nullptr && array->is_array() && i < array->size() ? (*array)[i] : none();
}

void header_line(const json& now, std::vector<std::string>& out) {
    const json* ready = find(now, {"ready"});
    std::string state = "-";
    if (is_true(find(now, {"server", "draining"})))
        state = "draining";
    else if (ready != nullptr && ready->is_boolean())
        state = ready->get<bool>() ? "ready" : "not ready";
    out.push_back(fmt::format(
        "slabd {}  {} mode  up {}  {} threads  {}", text(find(now, {"server", "version"})),
        text(find(now, {"server", "mode"})), uptime(find(now, {"server", "uptime_seconds"})),
        count(find(now, {"server", "threads"})), state));
}

/// The admission limit as a bar: '#' in use, '|' the high-water mark, '.' free.
std::string pool_bar(const json& now, std::size_t width) {
    const auto in_use = number(find(now, {"pool", "in_use"}));
    const auto limit = number(find(now, {"pool", "limit"}));
    if (!in_use || !limit || *limit <= 0) return {};
    const std::size_t cells = std::clamp<std::size_t>(width > 20 ? width - 20 : 0, 10, 60);
    const auto cell = [&](double n) {
        return static_cast<std::size_t>(std::min(1.0, n / *limit) * static_cast<double>(cells) +
                                        0.5);
    };
    const std::size_t filled = cell(*in_use);
    std::string bar(filled, '#');
    bar.resize(cells, '.');
    if (const auto high = number(find(now, {"pool", "high_water"}))) {
        if (const std::size_t at = cell(*high); at > filled) bar[at - 1] = '|';
    }
    return fmt::format("          [{}] {:3.0f}%", bar, std::min(1.0, *in_use / *limit) * 100);
}

void pool_lines(const snapshots& s, std::size_t width, std::vector<std::string>& out) {
    out.push_back(fmt::format("pool      in use {}  limit {}  capacity {}  high water {}  free {}",
                              s.total({"pool", "in_use"}), s.total({"pool", "limit"}),
                              s.total({"pool", "capacity"}), s.total({"pool", "high_water"}),
                              s.total({"pool", "free"})));
    if (auto bar = pool_bar(s.now, width); !bar.empty()) out.push_back(std::move(bar));
    out.push_back(
        fmt::format("conns     active {}  accepted {}  accepts/s {}  refused {}  refused/s {}",
                    s.total({"connections", "active"}), s.total({"connections", "accepted"}),
                    s.per_second({"connections", "accepted"}), s.total({"connections", "refused"}),
                    s.per_second({"connections", "refused"})));
    out.push_back(fmt::format("bytes     in {}  out {}  (since start: in {}, out {})",
                              s.bytes_per_second({"bytes", "in"}),
                              s.bytes_per_second({"bytes", "out"}), s.bytes({"bytes", "in"}),
                              s.bytes({"bytes", "out"})));
}

/// Every reason, pool_full first as /stats declares them, in as many columns as fit.
void refusal_lines(const snapshots& s, std::size_t width, std::vector<std::string>& out) {
    constexpr std::size_t cell = 38;
    constexpr std::string_view gap = "   ";
    const std::size_t columns = std::clamp<std::size_t>((width + gap.size()) / (cell + gap.size()),
                                                        1, refusal_names.size());
    const auto row = [](std::string_view reason, std::string_view total, std::string_view rate) {
        return fmt::format("  {:<15}{:>9}{:>12}", reason, total, rate);
    };
    std::string line;
    for (std::size_t i = 0; i < columns; ++i)
        line += (i > 0 ? std::string{gap} : "") + row("refused", "total", "per second");
    out.push_back(std::move(line));
    line.clear();
    for (std::size_t i = 0; i < refusal_names.size(); ++i) {
        const char* reason = refusal_names[i];
        if (i % columns != 0) line += gap;
        line += row(reason, s.total({"connections", "refused_by_reason", reason}),
                    s.per_second({"connections", "refused_by_reason", reason}));
        if (i % columns == columns - 1 || i + 1 == refusal_names.size()) {
            out.push_back(std::move(line));
            line.clear();
        }
    }
}

void shard_lines(const snapshots& s, std::vector<std::string>& out) {
    const json* shards = find(s.now, {"shards"});
    if (shards == nullptr || !shards->is_array()) return;
    const json* before = find(s.before, {"shards"});
    out.emplace_back(
        "shard    active  accepted accepts/s   refused refused/s        in/s       out/s");
    for (std::size_t i = 0; i < shards->size(); ++i) {
        const snapshots shard{element(before, i), (*shards)[i], s.elapsed};
        out.push_back(fmt::format(
            "{:>5} {:>9} {:>9} {:>9} {:>9} {:>9} {:>11} {:>11}", shard.total({"shard"}),
            shard.total({"active"}), shard.total({"accepted"}), shard.per_second({"accepted"}),
            shard.total({"refused"}), shard.per_second({"refused"}),
            shard.bytes_per_second({"bytes_in"}), shard.bytes_per_second({"bytes_out"})));
    }
}

void upstream_lines(const json& now, std::vector<std::string>& out) {
    const json* upstreams = find(now, {"upstreams"});
    if (upstreams == nullptr || !upstreams->is_array() || upstreams->empty()) return;
    out.emplace_back("");
    out.emplace_back("upstream                        active  failures  state     health");
    for (const json& u : *upstreams) {
        std::string health = text(find(u, {"health", "last_check"}));
        if (health == "none") health = "unchecked";
        if (is_true(find(u, {"health", "down"}))) health += " (held down)";
        out.push_back(fmt::format("{:<30} {:>7} {:>9}  {:<9} {}", text(find(u, {"name"})),
                                  count(find(u, {"active"})), count(find(u, {"connect_failures"})),
                                  text(find(u, {"state"})), health));
    }
}

}  // namespace

std::string render_top_frame(const json& previous, const json& current, double elapsed,
                             std::size_t width) {
    const snapshots s{previous, current, elapsed};
    std::vector<std::string> lines;
    header_line(current, lines);
    pool_lines(s, width, lines);
    lines.emplace_back("");
    refusal_lines(s, width, lines);
    lines.emplace_back("");
    shard_lines(s, lines);
    upstream_lines(current, lines);
    std::string frame;
    for (auto& line : lines) {
        if (line.size() > width) line.resize(width);
        frame += line;
        frame += '\n';
    }
    return frame;
}

}  // namespace slabd::server
