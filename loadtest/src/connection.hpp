// One client connection of the run: it waits for its ramp slot, connects, sends what its mode
// allows, checks every echoed byte as it arrives and ends with one outcome. Churn runs the same
// object through one connection after another, reusing its buffers.
#pragma once

#include <asio/basic_waitable_timer.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>

#include "plan.hpp"
#include "ready_wait.hpp"
#include "tally.hpp"

namespace slabd::load {

class worker;

using socket_type = asio::basic_stream_socket<asio::ip::tcp, asio::io_context::executor_type>;
using timer_type = asio::basic_waitable_timer<std::chrono::steady_clock,
                                              asio::wait_traits<std::chrono::steady_clock>,
                                              asio::io_context::executor_type>;

class connection {
  public:
    connection(worker& owner, std::uint32_t index);
    connection(const connection&) = delete;
    connection& operator=(const connection&) = delete;

    /// Waits for this connection's slot in the ramp, then connects.
    void start() noexcept;
    /// The run is over: send nothing new, let what is in flight come back, then half-close.
    void end() noexcept;
    /// Ends the connection as a timeout if what it waits for is overdue.
    void sweep(std::int64_t now) noexcept;

  private:
    enum class phase : std::uint8_t { waiting, connecting, open, closing, done };

    void connect() noexcept;
    void connect_at(std::int64_t at) noexcept;
    void on_connected(const asio::error_code& ec) noexcept;
    void on_read_ready(const asio::error_code& ec) noexcept;
    void on_readable(const asio::error_code& ec) noexcept;
    void on_writable(const asio::error_code& ec) noexcept;
    void on_pace(const asio::error_code& ec) noexcept;

    void send() noexcept;
    bool refill() noexcept;
    void exchange() noexcept;
    void proceed() noexcept;
    void receive() noexcept;
    bool take(const asio::error_code& ec, std::size_t n) noexcept;
    void consume(std::span<const std::byte> bytes) noexcept;
    void on_echo() noexcept;
    void on_eof() noexcept;
    void on_write_error(const asio::error_code& ec) noexcept;
    void pace() noexcept;
    void stop_sending() noexcept;
    void wait_readable() noexcept;
    void update_deadline() noexcept;
    [[nodiscard]] bool echo_required() const noexcept;

    void finish(outcome o) noexcept;
    void mark_up() noexcept;
    void close() noexcept;
    void settle() noexcept;
    void next_cycle() noexcept;
    void retire() noexcept;

    worker& owner_;
    const plan& plan_;
    tally& tally_;
    const std::uint32_t index_;
    socket_type socket_;
    ready_wait<connection, &connection::on_read_ready> read_wait_{*this};
    timer_type timer_;  // the ramp slot, rate mode's pacing, churn's back-off: never two at once
    std::unique_ptr<std::byte[]> memory_;
    std::span<std::byte> tx_;
    std::span<std::byte> rx_;

    phase phase_ = phase::waiting;
    int pending_ = 0;       // handlers not yet run: the socket and buffers are in use until it is 0
    std::int64_t now_ = 0;  // the clock, read once per handler
    std::int64_t deadline_ns_ = 0;  // 0: waiting for nothing
    bool moved_ = false;            // bytes moved in this handler: the deadline starts over
    bool counted_up_ = false;       // in the gauge of connections up: the server echoed on it
    outcome last_outcome_ = outcome::ok;

    // This connection (churn: this cycle's connection).
    std::uint64_t cycle_ = 0;
    std::uint64_t id_ = 0;  // the pattern's connection key
    std::int64_t started_ns_ = 0;
    std::uint64_t measured_ = 0;  // count mode: messages (churn: connections) in the window so far
    std::uint64_t rate_end_ = 0;

    // Sending: the next byte to generate is byte send_off_ of message send_msg_; messages below
    // allowed_ may be sent; tx_[tx_done_, tx_len_) is generated but not yet written.
    std::uint64_t allowed_ = 0;
    std::uint64_t send_msg_ = 0;
    std::size_t send_off_ = 0;
    std::size_t tx_len_ = 0;
    std::size_t tx_done_ = 0;
    std::uint64_t sent_bytes_ = 0;
    std::int64_t sent_at_ns_ = 0;  // rr: when the message in flight was sent
    bool write_blocked_ = false;
    bool ending_ = false;  // half-close once everything allowed is written
    bool shut_down_ = false;

    // Receiving: the next byte expected is byte recv_off_ of message recv_msg_.
    std::uint64_t recv_msg_ = 0;
    std::size_t recv_off_ = 0;
    std::uint64_t recv_bytes_ = 0;
    bool recv_ok_ = true;  // the message being received has matched so far
    bool read_waiting_ = false;
    bool proven_ = false;   // an intact echo came back: the server took this connection
    bool suspect_ = false;  // the first echo did not match: a busy line, if EOF follows
};

}  // namespace slabd::load
