// The connection log (log.connections): one line per closed connection, written by a thread of
// its own so that no data thread formats text, takes the sink's lock or waits on a disk. Each
// shard copies a fixed record into a ring of its own; the writer drains the rings. A record that
// finds its ring full, or comes past log.connections_rate, is skipped and counted, never waited
// for.
#pragma once

#include <array>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "limits.hpp"

namespace slabd::server {

/// What the log says of one connection, copied as it closes.
struct connection_record {
    std::int64_t closed_at_ns = 0;  // system clock, for the line's time
    std::uint64_t duration_us = 0;
    std::uint64_t received = 0;  // bytes from the client
    std::uint64_t sent = 0;      // bytes to the client
    source_key client;           // the whole address: IPv4 as ::ffff:a.b.c.d
    std::uint16_t client_port = 0;
    std::uint16_t shard = 0;
    const char* reason = "";          // a close reason's name, static
    std::array<char, 64> upstream{};  // its name, cut to fit and NUL-ended; "" for none
};

/// One shard's records on their way to the writer: a single-producer, single-consumer ring.
class record_ring {
  public:
    /// Room for `capacity` records, a power of two.
    explicit record_ring(std::size_t capacity) : slots_(capacity) {}
    /// On the shard's thread only; false when the writer has fallen that far behind.
    [[nodiscard]] bool push(const connection_record& r) noexcept {
        const std::uint64_t head = head_.load(std::memory_order_relaxed);
        if (head - tail_.load(std::memory_order_acquire) == slots_.size()) return false;
        slots_[head & (slots_.size() - 1)] = r;
        head_.store(head + 1, std::memory_order_release);
        return true;
    }
    /// On the writer's thread only: hands `take` each record queued, oldest first.
    template <class Take>
    void drain(Take take) {
        std::uint64_t tail = tail_.load(std::memory_order_relaxed);
        const std::uint64_t head = head_.load(std::memory_order_acquire);
        // A slot is the shard's again only once tail passes it, after `take` has read it.
        for (; tail != head; ++tail) take(slots_[tail & (slots_.size() - 1)]);
        tail_.store(tail, std::memory_order_release);
    }

  private:
    std::vector<connection_record> slots_;
    // Apart, so that the shard's stores and the writer's do not share a cache line.
    alignas(64) std::atomic<std::uint64_t> head_{0};
    alignas(64) std::atomic<std::uint64_t> tail_{0};
};

class connection_log {
  public:
    /// A ring per shard. `skipped` sums the shards' skip counters for the writer's once-a-second
    /// report; the writer calls it only between start() and stop().
    connection_log(std::size_t shards, bool on, std::uint32_t rate,
                   std::function<std::uint64_t()> skipped);
    ~connection_log() { stop(); }
    connection_log(const connection_log&) = delete;
    connection_log& operator=(const connection_log&) = delete;

    [[nodiscard]] bool enabled() const noexcept { return on_.load(std::memory_order_relaxed); }
    /// On shard `r.shard`'s thread: queues the line; false when it is skipped instead.
    [[nodiscard]] bool offer(const connection_record& r) noexcept;
    /// On the control thread (reload).
    void configure(bool on, std::uint32_t rate);
    /// Starts the writer if the log is on, or else when a reload turns it on: a process that logs
    /// no connection keeps no thread for it (decision 29). In run(), not at construction, so that
    /// a daemon's fork comes first; start, configure and stop run on one thread.
    void start();
    /// Writes what the rings still hold, then stops the writer; once the shards have stopped.
    void stop();

  private:
    void run();
    void write_queued();
    void report_skipped();

    std::vector<std::unique_ptr<record_ring>> rings_;
    accept_rate_limiter rate_;  // the token bucket the accept rate uses, for lines
    std::atomic<bool> on_;
    std::function<std::uint64_t()> skipped_;
    std::uint64_t reported_ = 0;  // writer thread
    std::mutex mutex_;
    std::condition_variable wake_;
    bool stopping_ = false;  // under mutex_
    bool started_ = false;
    std::thread writer_;
};

}  // namespace slabd::server
