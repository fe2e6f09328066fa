#include "connection_log.hpp"

#include <spdlog/spdlog.h>

#include <chrono>
#include <string>

#include "logging.hpp"

namespace slabd::server {

namespace {

// At the default rate (1000 lines a second) a ring holds a second's lines even if one shard
// closes them all; past that the writer is behind and the lines are skipped.
constexpr std::size_t ring_records = 1024;
// How long lines wait in a ring: long enough that the writer wakes rarely, short enough that a
// line reads as written when its connection closed.
constexpr std::chrono::milliseconds write_period{100};
constexpr std::chrono::seconds report_period{1};

std::uint32_t burst_of(std::uint32_t rate) noexcept {
    return rate;  // a second's worth: a burst of closes is logged whole when the average allows
}

std::string client_text(const connection_record& r) {
    const std::string address = to_string(r.client, 32, 128);
    return (is_v4(r.client) ? address : "[" + address + "]") + ":" + std::to_string(r.client_port);
}

void write_line(const connection_record& r) {
    const std::string client = client_text(r);
    const std::string shard = std::to_string(r.shard);
    const std::string duration =
        fmt::format("{}.{:03}", r.duration_us / 1000, r.duration_us % 1000);
    const std::string received = std::to_string(r.received);
    const std::string sent = std::to_string(r.sent);
    const std::string_view upstream =
        r.upstream[0] != '\0' ? std::string_view(r.upstream.data()) : std::string_view("-");
    const logging::field fields[] = {
        {"client", client},
        {"shard", shard, false},
        {"upstream", upstream},
        {"duration_ms", duration, false},
        {"bytes_in", received, false},
        {"bytes_out", sent, false},
        {"reason", r.reason},
    };
    logging::write_fields(std::chrono::system_clock::time_point(
                              std::chrono::duration_cast<std::chrono::system_clock::duration>(
                                  std::chrono::nanoseconds(r.closed_at_ns))),
                          "connection closed", fields);
}

}  // namespace

connection_log::connection_log(std::size_t shards, bool on, std::uint32_t rate,
                               std::function<std::uint64_t()> skipped)
    : rate_(rate, burst_of(rate)), on_(on), skipped_(std::move(skipped)) {
    for (std::size_t i = 0; i < shards; ++i)
        rings_.push_back(std::make_unique<record_ring>(ring_records));
}

void connection_log::start() {
    started_ = true;
    if (enabled()) writer_ = std::thread([this] { run(); });
}

void connection_log::stop() {
    if (!writer_.joinable()) return;
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    wake_.notify_one();
    writer_.join();
}

bool connection_log::offer(const connection_record& r) noexcept {
    if (rate_.enabled() && !rate_.try_take(accept_rate_limiter::clock::now())) return false;
    return rings_[r.shard]->push(r);
}

void connection_log::configure(bool on, std::uint32_t rate) {
    rate_.configure(rate, burst_of(rate));
    {
        // Under the lock: the writer tests enabled() and then sleeps, and this must not fall
        // between the two.
        std::lock_guard lock(mutex_);
        on_.store(on, std::memory_order_relaxed);
    }
    wake_.notify_one();
    if (on && started_ && !writer_.joinable()) writer_ = std::thread([this] { run(); });
}

void connection_log::run() {
    auto next_report = std::chrono::steady_clock::now() + report_period;
    std::unique_lock lock(mutex_);
    while (!stopping_) {
        // Off, nothing new can come: sleep until a reload turns it on, or the end.
        if (enabled())
            wake_.wait_for(lock, write_period);
        else
            wake_.wait(lock);
        lock.unlock();
        write_queued();
        if (std::chrono::steady_clock::now() >= next_report) {
            report_skipped();
            next_report = std::chrono::steady_clock::now() + report_period;
        }
        lock.lock();
    }
    lock.unlock();
    write_queued();
    report_skipped();
}

void connection_log::write_queued() {
    for (auto& ring : rings_) ring->drain(write_line);
}

void connection_log::report_skipped() {
    const std::uint64_t skipped = skipped_();
    if (skipped == reported_) return;
    spdlog::warn("{} connection log lines skipped", skipped - reported_);
    reported_ = skipped;
}

}  // namespace slabd::server
