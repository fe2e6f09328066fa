// One client thread: its own io_context, its share of the connections (every threads-th one),
// a tick that expires overdue operations and publishes the tally for the progress line, and
// the end of the run. Nothing in it is shared with other threads but published() and the gauges.
#pragma once

#include <asio/io_context.hpp>

#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "connection.hpp"
#include "plan.hpp"
#include "tally.hpp"

namespace slabd::load {

class worker {
  public:
    worker(const plan& p, unsigned index, live_gauges& gauges);
    ~worker();
    worker(const worker&) = delete;
    worker& operator=(const worker&) = delete;

    /// Runs on the worker's own thread until its last connection has closed.
    void run();
    /// Thread-safe: end the run now (Ctrl-C); connections finish what is in flight.
    void request_end();
    /// Thread-safe: the tally as of the last tick.
    [[nodiscard]] tally published() const;
    /// The final tally, once run() has returned.
    [[nodiscard]] const tally& result() const noexcept { return tally_; }

    // Used by this worker's connections, on its thread.
    [[nodiscard]] asio::io_context& context() noexcept { return context_; }
    [[nodiscard]] reactor_type& reactor() noexcept { return reactor_; }
    [[nodiscard]] const plan& the_plan() const noexcept { return plan_; }
    [[nodiscard]] tally& counts() noexcept { return tally_; }
    [[nodiscard]] live_gauges& gauges() noexcept { return gauges_; }
    [[nodiscard]] bool ended() const noexcept { return ended_; }
    void connection_done() noexcept;

  private:
    void tick();
    void end();
    void publish();

    const plan& plan_;
    // One thread runs it and only it touches the sockets, so the reactor needs no per-descriptor
    // locks; request_end's post() from the main thread stays safe.
    asio::io_context context_{ASIO_CONCURRENCY_HINT_UNSAFE_IO};
    reactor_type& reactor_ = asio::use_service<reactor_type>(context_);
    live_gauges& gauges_;
    tally tally_;
    std::vector<std::unique_ptr<connection>> connections_;
    timer_type tick_timer_;
    timer_type end_timer_;
    std::size_t running_ = 0;
    bool ended_ = false;
    mutable std::mutex published_mutex_;
    tally published_;
};

}  // namespace slabd::load
