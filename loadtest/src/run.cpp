#include "run.hpp"

#include <fmt/format.h>
#include <unistd.h>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/post.hpp>
#include <asio/signal_set.hpp>
#include <asio/steady_timer.hpp>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <optional>
#include <thread>

#include "hgrm.hpp"
#include "plan.hpp"
#include "report.hpp"
#include "system.hpp"
#include "worker.hpp"

namespace slabd::load {
namespace {

// Descriptors beyond the connections: standard streams, epoll, timers, report files.
constexpr std::uint64_t spare_descriptors = 32;

std::optional<asio::ip::tcp::endpoint> resolve(const options& o) {
    asio::io_context context;
    asio::ip::tcp::resolver resolver(context);
    asio::error_code ec;
    const auto results = resolver.resolve(o.target_host, std::to_string(o.target_port), ec);
    if (ec || results.empty()) {
        fmt::print(stderr, "slabd-load: cannot resolve --target {}: {}\n", o.target(),
                   ec ? ec.message() : "no address");
        return std::nullopt;
    }
    return results.begin()->endpoint();
}

bool write_file(const std::string& path, const std::string& what, auto&& write) {
    std::ofstream out(path);
    if (out) write(out);
    if (out.flush()) return true;
    fmt::print(stderr, "slabd-load: cannot write the {} to {}\n", what, path);
    return false;
}

/// The main thread while the workers run: a progress line each period, Ctrl-C ends the run
/// gracefully (a second one ends the process), and the last worker to finish stops it all.
class supervisor {
  public:
    supervisor(const plan& p, std::vector<std::unique_ptr<worker>>& workers, live_gauges& gauges,
               double progress_s)
        : plan_(p),
          workers_(workers),
          gauges_(gauges),
          signals_(context_, SIGINT, SIGTERM),
          timer_(context_),
          tty_(::isatty(STDERR_FILENO) == 1),
          // A terminal gets a live line; a log gets a line now and then.
          progress_period_(std::max<std::chrono::nanoseconds>(
              std::chrono::milliseconds(1),  // a zero period would spin this thread
              std::chrono::duration_cast<std::chrono::nanoseconds>(
                  std::chrono::duration<double>(progress_s > 0 ? progress_s
                                                : tty_         ? 1.0
                                                               : 5.0)))) {}

    void run() {
        std::vector<std::thread> threads;
        for (auto& w : workers_)
            threads.emplace_back([this, &w] {
                w->run();
                asio::post(context_, [this] { on_worker_done(); });
            });
        wait_signal();
        schedule_progress();
        context_.run();
        for (auto& t : threads) t.join();
        if (tty_) fmt::print(stderr, "\r\033[K");
    }

    [[nodiscard]] std::optional<std::int64_t> interrupted_at() const { return interrupted_at_; }
    /// When the last connection closed: earlier than planned if the server dropped them all.
    [[nodiscard]] std::int64_t finished_at() const { return finished_at_; }

  private:
    void on_worker_done() {
        if (++done_ < workers_.size()) return;
        finished_at_ = now_ns();
        // A handler already queued is not cancelled any more and runs with success: both
        // handlers check finished() too, or they would re-arm and keep run() going for ever.
        signals_.cancel();
        timer_.cancel();
    }

    [[nodiscard]] bool finished() const { return finished_at_ != never; }

    void wait_signal() {
        signals_.async_wait([this](const asio::error_code& ec, int) {
            if (ec || finished()) return;
            if (interrupted_at_) std::_Exit(130);
            interrupted_at_ = now_ns();
            fmt::print(stderr, "{}slabd-load: ending the run; interrupt again to quit at once\n",
                       tty_ ? "\n" : "");
            for (auto& w : workers_) w->request_end();
            wait_signal();
        });
    }

    void schedule_progress() {
        timer_.expires_after(progress_period_);
        timer_.async_wait([this](const asio::error_code& ec) {
            if (ec || finished()) return;
            show_progress();
            schedule_progress();
        });
    }

    void show_progress() {
        tally sum;
        for (auto& w : workers_) sum.merge(w->published());
        const std::int64_t now = now_ns();
        const double interval = static_cast<double>(now - last_ns_) / 1e9;
        const double rate =
            interval > 0 ? static_cast<double>(sum.msgs_all - last_msgs_) / interval : 0.0;
        last_ns_ = now;
        last_msgs_ = sum.msgs_all;
        const std::string line =
            progress_line(static_cast<double>(now - plan_.start_ns) / 1e9,
                          gauges_.up.load(std::memory_order_relaxed), rate, sum);
        if (tty_)
            fmt::print(stderr, "\r{}\033[K", line);
        else
            fmt::print(stderr, "{}\n", line);
        std::fflush(stderr);
    }

    const plan& plan_;
    std::vector<std::unique_ptr<worker>>& workers_;
    live_gauges& gauges_;
    asio::io_context context_{1};
    asio::signal_set signals_;
    asio::steady_timer timer_;
    bool tty_;
    std::chrono::nanoseconds progress_period_;
    std::size_t done_ = 0;
    std::optional<std::int64_t> interrupted_at_;
    std::int64_t finished_at_ = never;
    std::int64_t last_ns_ = now_ns();
    std::uint64_t last_msgs_ = 0;
};

double measured_seconds(const plan& p, const tally& t, const supervisor& boss) {
    std::int64_t end = t.last_completion_ns;
    if (!p.by_count()) {
        end = std::min(p.measure_end_ns, boss.interrupted_at().value_or(never));
        // A closed loop whose connections all failed ended early. Rate mode's figures are over
        // its schedule, which may well be done a moment before the window closes.
        if (p.run_mode != mode::rate) end = std::min(end, boss.finished_at());
    }
    return static_cast<double>(std::max<std::int64_t>(0, end - p.measure_start_ns)) / 1e9;
}

}  // namespace

int run(const options& o) {
    std::signal(SIGPIPE, SIG_IGN);  // a reset connection is an outcome, not the end of the process
    const std::uint64_t limit = raise_descriptor_limit();
    if (limit < o.connections + spare_descriptors)
        fmt::print(
            stderr,
            "slabd-load: warning: {} connections need about {} descriptors but the limit is {}\n",
            o.connections, o.connections + spare_descriptors, limit);
    const auto target = resolve(o);
    if (!target) return 2;
    for (const auto& source : o.sources)
        if (source.is_v4() != target->address().is_v4()) {
            fmt::print(stderr, "slabd-load: --source {} is not of the target's address family\n",
                       source.to_string());
            return 2;
        }

    const plan p = make_plan(o, *target, now_ns());
    live_gauges gauges;
    std::vector<std::unique_ptr<worker>> workers;
    for (unsigned i = 0; i < p.threads; ++i)
        workers.push_back(std::make_unique<worker>(p, i, gauges));
    supervisor boss(p, workers, gauges, o.progress_s);
    boss.run();

    auto total = std::make_unique<tally>();
    for (auto& w : workers) total->merge(w->result());
    const summary s = summarize(*total, measured_seconds(p, *total, boss), gauges.peak.load(),
                                boss.interrupted_at().has_value());
    std::cout << summary_table(o, *total, s) << std::flush;
    bool written = true;
    if (!o.json_path.empty())
        written &= write_file(o.json_path, "JSON report", [&](std::ostream& out) {
            out << to_json(o, *total, s).dump(2) << '\n';
        });
    if (!o.hgrm_path.empty())
        written &= write_file(o.hgrm_path, "latency distribution",
                              [&](std::ostream& out) { write_hgrm(out, total->latency); });
    return written ? exit_status(*total, o.max_errors) : 1;
}

}  // namespace slabd::load
