#include "top.hpp"

#include <fmt/format.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <csignal>
#include <initializer_list>
#include <iostream>
#include <optional>
#include <string_view>
#include <thread>
#include <vector>

#include "probe.hpp"
#include "slabd/server/stats.hpp"

namespace slabd::server {
namespace {

using nlohmann::json;
using std::chrono::steady_clock;

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

// Every figure /stats reports is a count or a duration: one that is negative, not finite or past
// 2^53 is not slabd's, and shows as "-" rather than reach the integer conversions that draw bars.
std::optional<double> number(const json* j) {
    if (j == nullptr || !j->is_number()) return std::nullopt;
    const double v = j->get<double>();
    if (!std::isfinite(v) || v < 0 || v > 9007199254740992.0) return std::nullopt;
    return v;
}

std::string count(const json* j) {
    const auto v = number(j);
    if (!v) return "-";
    return j->is_number_float() ? fmt::format("{:.1f}", *v) : j->dump();
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

namespace {

// ---- the loop -------------------------------------------------------------------------------

volatile std::sig_atomic_t stop_requested = 0;

void request_stop(int) {
    stop_requested = 1;
}

/// Ctrl-C, SIGTERM and a closed terminal end the loop cleanly. Without SA_RESTART, so that a
/// signal cuts short the wait or a GET instead of waiting out its timeout.
void stop_on_signals() {
    struct sigaction action {};
    action.sa_handler = request_stop;
    sigemptyset(&action.sa_mask);
    for (const int signo : {SIGINT, SIGTERM, SIGHUP}) ::sigaction(signo, &action, nullptr);
}

struct poll_result {
    json stats;
    std::string error;  // empty when stats holds an answer
    steady_clock::time_point at;
};

poll_result poll_stats(const config::Config& settings) {
    poll_result result;
    const auto answer = admin_get(settings, "/stats");
    result.at = steady_clock::now();
    if (answer.status == 0) {
        result.error = answer.error;
    } else if (answer.status == 401) {
        result.error =
            "/stats answered 401: the daemon has an admin.token; give slabd top the "
            "same --config";
    } else if (answer.status != 200) {
        result.error = fmt::format("/stats answered {}", answer.status);
    } else {
        result.stats = json::parse(answer.body, nullptr, false);
        if (result.stats.is_discarded()) result.error = "/stats: not JSON";
    }
    return result;
}

winsize terminal_size() {
    winsize size{};
    if (::ioctl(STDOUT_FILENO, TIOCGWINSZ, &size) != 0 || size.ws_col == 0) size.ws_col = 80;
    return size;
}

/// The terminal while the view runs: the alternate screen (the shell's screen comes back at the
/// end), no cursor, keys read as typed and not echoed. Put back as it was however the loop ends.
class screen {
  public:
    screen() {
        if (::tcgetattr(STDIN_FILENO, &saved_) == 0) {
            keys_ = true;
            termios raw = saved_;
            // ISIG stays: Ctrl-C is still SIGINT.
            raw.c_lflag &= ~static_cast<tcflag_t>(ICANON | ECHO);
            raw.c_cc[VMIN] = 0;
            raw.c_cc[VTIME] = 0;
            ::tcsetattr(STDIN_FILENO, TCSANOW, &raw);
        }
        std::cout << "\x1b[?1049h\x1b[?25l" << std::flush;
    }
    ~screen() {
        std::cout << "\x1b[?25h\x1b[?1049l" << std::flush;
        if (keys_) ::tcsetattr(STDIN_FILENO, TCSANOW, &saved_);
    }
    screen(const screen&) = delete;
    screen& operator=(const screen&) = delete;

    /// Cursor home, each line cleared to its end, then the rest of the screen: no flicker, and no
    /// scrolling, since lines past the terminal's height are left out.
    static void draw(const std::string& text) {
        const winsize size = terminal_size();
        std::string out = "\x1b[H";
        std::size_t rows = 0;
        for (std::size_t at = 0; at < text.size() && (size.ws_row == 0 || rows < size.ws_row);
             ++rows) {
            const auto end = std::min(text.find('\n', at), text.size());
            if (rows > 0) out += '\n';
            out.append(text, at, std::min<std::size_t>(end - at, size.ws_col));
            out += "\x1b[K";
            at = end + 1;
        }
        out += "\x1b[J";
        std::cout << out << std::flush;
    }

    /// Waits until `deadline`; true when the view should end: q typed, a signal, the terminal gone.
    [[nodiscard]] bool wait_until(steady_clock::time_point deadline) const {
        while (stop_requested == 0) {
            const auto left =
                std::chrono::ceil<std::chrono::milliseconds>(deadline - steady_clock::now());
            if (left.count() <= 0) return false;
            pollfd in{STDIN_FILENO, POLLIN, 0};
            if (::poll(&in, keys_ ? 1 : 0, static_cast<int>(left.count())) <= 0) continue;
            if ((in.revents & (POLLHUP | POLLERR | POLLNVAL)) != 0) return true;
            char typed[64];
            const auto n = ::read(STDIN_FILENO, typed, sizeof typed);
            if (n > 0 && std::string_view(typed, static_cast<std::size_t>(n)).find_first_of("qQ") !=
                             std::string_view::npos)
                return true;
        }
        return true;
    }

  private:
    termios saved_{};
    bool keys_ = false;
};

/// As screen::wait_until, with no keys to read: only a signal ends the wait early.
bool sleep_until(steady_clock::time_point deadline) {
    while (stop_requested == 0) {
        const auto left =
            std::chrono::ceil<std::chrono::milliseconds>(deadline - steady_clock::now());
        if (left.count() <= 0) return false;
        ::poll(nullptr, 0, static_cast<int>(left.count()));
    }
    return true;
}

double seconds_between(steady_clock::time_point a, steady_clock::time_point b) {
    return std::chrono::duration<double>(b - a).count();
}

/// The live loop: a frame per poll; a failed poll shows its error above the last frame, which
/// stays for context while the daemon is away.
template <typename Show, typename Wait>
int live(const config::Config& settings, std::chrono::milliseconds interval, poll_result latest,
         std::string_view hint, Show show, Wait wait) {
    const std::string status =
        fmt::format("slabd top: {}  every {:g}s  {}\n", config::to_string(settings.admin),
                    static_cast<double>(interval.count()) / 1000, hint);
    json previous;
    steady_clock::time_point previous_at;
    std::string frame;
    auto next = latest.at;
    for (;;) {
        std::string problem;
        if (latest.error.empty()) {
            frame =
                render_top_frame(previous, latest.stats, seconds_between(previous_at, latest.at),
                                 terminal_size().ws_col);
            previous = std::move(latest.stats);
            previous_at = latest.at;
        } else {
            problem = "no answer, retrying: " + latest.error + "\n";
        }
        show(status + problem + frame);
        // After a poll that took longer than the interval, the next one goes at once, not a
        // burst of them to catch up.
        next = std::max(next + interval, steady_clock::now());
        if (wait(next)) return 0;
        latest = poll_stats(settings);
    }
}

}  // namespace

int run_top(const config::Config& settings, std::chrono::milliseconds interval, bool once) {
    auto first = poll_stats(settings);
    if (!first.error.empty()) {
        std::cerr << "slabd top: " << first.error << "\n";
        return 1;
    }
    if (once) {
        std::this_thread::sleep_for(interval);
        auto second = poll_stats(settings);
        if (!second.error.empty()) {
            std::cerr << "slabd top: " << second.error << "\n";
            return 1;
        }
        std::cout << render_top_frame(first.stats, second.stats,
                                      seconds_between(first.at, second.at), terminal_size().ws_col);
        return 0;
    }
    stop_on_signals();
    if (::isatty(STDOUT_FILENO) == 0)
        return live(
            settings, interval, std::move(first), "(Ctrl-C quits)",
            [](const std::string& text) { std::cout << text << std::endl; }, sleep_until);
    const screen terminal;
    return live(
        settings, interval, std::move(first), "(q or Ctrl-C quits)",
        [](const std::string& text) { screen::draw(text); },
        [&terminal](steady_clock::time_point deadline) { return terminal.wait_until(deadline); });
}

}  // namespace slabd::server
