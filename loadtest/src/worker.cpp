#include "worker.hpp"

#include <asio/post.hpp>

namespace slabd::load {
namespace {

// Timeouts are checked this often, so they fire up to this late; --timeout is in seconds.
constexpr std::chrono::milliseconds tick_period{100};

}  // namespace

worker::worker(const plan& p, unsigned index, live_gauges& gauges)
    : plan_(p),
      gauges_(gauges),
      tick_timer_(context_.get_executor()),
      end_timer_(context_.get_executor()) {
    for (std::uint32_t i = index; i < p.connections; i += p.threads)
        connections_.push_back(std::make_unique<connection>(*this, i));
}

worker::~worker() = default;

void worker::run() {
    running_ = connections_.size();
    if (plan_.end_ns != never) {
        end_timer_.expires_at(timer_type::time_point(std::chrono::nanoseconds(plan_.end_ns)));
        end_timer_.async_wait([this](const asio::error_code& ec) {
            if (!ec) end();
        });
    }
    tick();
    for (auto& c : connections_) c->start();
    context_.run();
    publish();
}

void worker::request_end() {
    asio::post(context_, [this] { end(); });
}

void worker::end() {
    if (ended_) return;
    ended_ = true;
    end_timer_.cancel();
    for (auto& c : connections_) c->end();
}

void worker::connection_done() noexcept {
    if (--running_ != 0) return;
    // Nothing left to time out or to end: let run() return.
    tick_timer_.cancel();
    end_timer_.cancel();
}

void worker::tick() {
    tick_timer_.expires_after(tick_period);
    tick_timer_.async_wait([this](const asio::error_code& ec) {
        if (ec || running_ == 0) return;
        const std::int64_t now = now_ns();
        for (auto& c : connections_) c->sweep(now);
        publish();
        if (running_ != 0) tick();
    });
}

void worker::publish() {
    std::lock_guard lock(published_mutex_);
    published_ = tally_;
}

tally worker::published() const {
    std::lock_guard lock(published_mutex_);
    return published_;
}

}  // namespace slabd::load
