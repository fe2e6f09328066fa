#include "health_check.hpp"

#include <spdlog/spdlog.h>
#include <asio/ip/tcp.hpp>
#include <asio/read.hpp>
#include <asio/write.hpp>

#include <algorithm>
#include <array>
#include <string_view>

namespace slabd::server {

namespace {

using check_result = upstreams::check_result;
// What a check reads looking for `expect`: an answer that has not shown it by then never will.
constexpr std::size_t max_answer = 4096;

}  // namespace

/// One check in flight: shared by its handlers and the deadline, so whichever runs last frees it.
struct health_checker::probe {
    probe(asio::io_context& control, std::size_t of_slot, std::uint64_t of_generation,
          const health_check_settings& settings)
        : socket(control),
          deadline(control),
          slot(of_slot),
          generation(of_generation),
          send(settings.send),
          expect(settings.expect) {}
    asio::ip::tcp::socket socket;
    asio::steady_timer deadline;
    std::size_t slot;
    std::uint64_t generation;
    // Copies: a reload may replace the settings while a write or read is under way.
    std::string send;
    std::string expect;
    std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
    std::string answer;
    std::array<char, 512> chunk{};
    bool timed_out = false;
    bool finished = false;
};

health_checker::health_checker(asio::io_context& control, upstreams& list,
                               health_check_settings settings)
    : control_(control), list_(list), settings_(std::move(settings)), timer_(control) {}

health_checker::~health_checker() = default;

void health_checker::start() {
    round();
}

void health_checker::update(health_check_settings settings) {
    const bool was_on = settings_.interval.count() > 0;
    settings_ = std::move(settings);
    if (settings_.interval.count() == 0) {
        // Without checks nothing could ever bring a down upstream back.
        for (std::size_t i = 0; i < list_.slots_used(); ++i) list_.at(i).checked_down.store(false);
        timer_.cancel();
        return;
    }
    if (!was_on && !stopped_) round();
}

void health_checker::stop() noexcept {
    stopped_ = true;
    timer_.cancel();
}

void health_checker::round() {
    if (stopped_ || settings_.interval.count() == 0) return;
    for (std::size_t i = 0; i < list_.slots_used(); ++i) check(i);
    timer_.expires_after(settings_.interval);
    timer_.async_wait([this](const asio::error_code& ec) {
        if (!ec) round();
    });
}

void health_checker::check(std::size_t slot) {
    upstreams::upstream& u = list_.at(slot);
    // One check at a time per upstream: a slow one is not stacked on by the next round.
    if (u.status.load(std::memory_order_relaxed) != upstreams::state::serving || u.check_in_flight)
        return;
    u.check_in_flight = true;
    auto p = std::make_shared<probe>(control_, slot, u.generation, settings_);
    p->deadline.expires_after(settings_.timeout);
    p->deadline.async_wait([p](const asio::error_code& ec) {
        if (ec || p->finished) return;
        p->timed_out = true;
        asio::error_code ignored;
        p->socket.close(ignored);  // whatever the check waits for ends with an error now
    });
    p->socket.async_connect(u.endpoint, [this, p](const asio::error_code& ec) {
        if (ec)
            return finish(p, p->timed_out ? check_result::timeout : check_result::connect_failed);
        if (p->send.empty() && p->expect.empty()) return finish(p, check_result::ok);
        asio::async_write(
            p->socket, asio::buffer(p->send), [this, p](const asio::error_code& e, std::size_t) {
                if (e)
                    return finish(p,
                                  p->timed_out ? check_result::timeout : check_result::send_failed);
                if (p->expect.empty()) return finish(p, check_result::ok);
                read_answer(p);
            });
    });
}

void health_checker::read_answer(const std::shared_ptr<probe>& p) {
    p->socket.async_read_some(
        asio::buffer(p->chunk), [this, p](const asio::error_code& ec, std::size_t n) {
            p->answer.append(p->chunk.data(), n);
            if (p->answer.find(p->expect) != std::string::npos) return finish(p, check_result::ok);
            // An answer without `expect` failed the check, however it ended; silence timed out.
            if (ec || p->answer.size() >= max_answer)
                return finish(p, p->timed_out && p->answer.empty() ? check_result::timeout
                                                                   : check_result::expect_failed);
            read_answer(p);
        });
}

void health_checker::finish(const std::shared_ptr<probe>& p, check_result result) {
    p->finished = true;
    p->deadline.cancel();
    asio::error_code ignored;
    p->socket.close(ignored);
    upstreams::upstream& u = list_.at(p->slot);
    if (u.generation != p->generation) return;  // the slot has another upstream now
    u.check_in_flight = false;
    const auto took = std::chrono::steady_clock::now() - p->started;
    u.last_check_us.store(static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(took).count()));
    u.last_check.store(result);
    if (settings_.interval.count() == 0) return;  // turned off meanwhile
    const bool down = u.checked_down.load();
    if (result == check_result::ok) {
        u.failures_in_row.store(0);
        if (down && ++u.successes_in_row >= settings_.rise) {
            u.checked_down.store(false);
            u.transitions.fetch_add(1);
            spdlog::info("upstream {} is up: {} checks in a row passed", u.name,
                         u.successes_in_row);
        }
        return;
    }
    u.successes_in_row = 0;
    const std::uint32_t failures = u.failures_in_row.fetch_add(1) + 1;
    if (!down && failures >= settings_.fall) {
        u.checked_down.store(true);
        u.transitions.fetch_add(1);
        spdlog::warn(
            "upstream {} is down: {} failures in a row, the last check {}; it gets no new clients",
            u.name, failures, upstreams::check_result_names[static_cast<std::size_t>(result)]);
    }
}

}  // namespace slabd::server
