#include "connection.hpp"

#include <asio/post.hpp>

#include <algorithm>
#include <limits>

#include "pattern.hpp"
#include "system.hpp"
#include "worker.hpp"

namespace slabd::load {
namespace {

// A busy line is one line; more than this before the EOF is not a refusal but garbage.
constexpr std::uint64_t busy_line_limit = 4096;
// After a failed connect (no ports, no descriptors), a churn slot waits this long to retry.
constexpr std::chrono::milliseconds connect_retry_delay{10};

timer_type::time_point at_ns(std::int64_t t) {
    return timer_type::time_point(std::chrono::nanoseconds(t));
}

outcome classify(const asio::error_code& ec) noexcept {
    if (ec == asio::error::connection_reset || ec == asio::error::broken_pipe ||
        ec == asio::error::connection_aborted)
        return outcome::reset;
    if (ec == asio::error::timed_out) return outcome::timeout;
    return outcome::other_error;
}

}  // namespace

connection::connection(worker& owner, std::uint32_t index)
    : owner_(owner),
      plan_(owner.the_plan()),
      tally_(owner.counts()),
      index_(index),
      socket_(owner.context().get_executor()),
      timer_(owner.context().get_executor()),
      memory_(std::make_unique<std::byte[]>(plan_.tx_capacity + plan_.rx_capacity)),
      tx_(memory_.get(), plan_.tx_capacity),
      rx_(memory_.get() + plan_.tx_capacity, plan_.rx_capacity) {}

// ---- lifecycle --------------------------------------------------------------------------------

void connection::start() noexcept {
    const std::int64_t at = plan_.run_mode == mode::churn && plan_.paced()
                                ? plan_.scheduled_ns(index_, 0)
                                : plan_.connect_at(index_);
    if (at <= now_ns()) return connect();
    connect_at(at);
}

void connection::connect_at(std::int64_t at) noexcept {
    phase_ = phase::waiting;
    timer_.expires_at(at_ns(at));
    ++pending_;
    timer_.async_wait([this](const asio::error_code&) {
        --pending_;
        owner_.ended() ? retire() : connect();
    });
}

void connection::connect() noexcept {
    id_ = index_ + std::uint64_t{plan_.connections} * cycle_;
    allowed_ = send_msg_ = recv_msg_ = 0;
    send_off_ = recv_off_ = tx_len_ = tx_done_ = 0;
    sent_bytes_ = recv_bytes_ = 0;
    write_blocked_ = ending_ = shut_down_ = read_waiting_ = proven_ = suspect_ = false;
    recv_ok_ = true;
    phase_ = phase::connecting;
    now_ = started_ns_ = now_ns();
    deadline_ns_ = now_ + plan_.timeout_ns;

    asio::error_code ec;
    socket_.open(plan_.target.protocol(), ec);
    if (!ec && !plan_.sources.empty()) {
        bind_address_no_port(socket_.native_handle(), ec);
        if (!ec) socket_.bind({plan_.sources[id_ % plan_.sources.size()], 0}, ec);
    }
    if (ec) return finish(outcome::connect_error);
    note_unread_bytes(socket_.native_handle());
    ++pending_;
    socket_.async_connect(plan_.target, [this](const asio::error_code& e) {
        --pending_;
        on_connected(e);
    });
}

void connection::on_connected(const asio::error_code& ec) noexcept {
    if (phase_ == phase::closing) return settle();  // timed out meanwhile
    if (ec) return finish(outcome::connect_error);
    if (owner_.ended()) return close();  // too late to be part of the run
    now_ = now_ns();
    asio::error_code ignored;
    socket_.non_blocking(true, ignored);
    socket_.set_option(asio::ip::tcp::no_delay(true), ignored);
    phase_ = phase::open;
    if (!echo_required()) mark_up();

    switch (plan_.run_mode) {
        case mode::rr:
        case mode::churn:
        case mode::hold:
            allowed_ = 1;
            break;
        case mode::rate:
            // Start on the schedule's next slot: time spent connecting is not the server's lag.
            allowed_ = send_msg_ = recv_msg_ = plan_.first_due_at_or_after(index_, now_);
            rate_end_ = plan_.rate_end(index_, send_msg_);
            pace();
            break;
        case mode::bulk:
            allowed_ = plan_.bulk_direction == direction::down
                           ? 0
                           : std::numeric_limits<std::uint64_t>::max();
            break;
    }
    moved_ = true;
    send();
    // Read at once: an early busy line and EOF raised an edge before there was a wait for it.
    if (phase_ == phase::open) exchange();
}

void connection::end() noexcept {
    switch (phase_) {
        case phase::waiting:
            timer_.cancel();  // its handler sees the end and retires
            return;
        case phase::open:
            // Churn's cycle in flight finishes and no other starts; a suspect connection waits
            // for its EOF, which our half-close would provoke from any echo server.
            if (plan_.run_mode == mode::churn || suspect_) return;
            if (plan_.bulk_direction == direction::down && plan_.run_mode == mode::bulk)
                return finish(outcome::ok);
            now_ = now_ns();
            stop_sending();
            send();
            if (phase_ == phase::open) update_deadline();
            return;
        case phase::connecting:  // on_connected sees the end
        case phase::closing:
        case phase::done:
            return;
    }
}

void connection::sweep(std::int64_t now) noexcept {
    if (deadline_ns_ == 0 || now < deadline_ns_) return;
    if (phase_ == phase::connecting || phase_ == phase::open) finish(outcome::timeout);
}

void connection::finish(outcome o) noexcept {
    if (phase_ == phase::closing || phase_ == phase::done) return;
    tally_.count(o);
    // Paced churn counts a connection by when it was due, as its latency is.
    const std::int64_t at =
        plan_.run_mode == mode::churn && plan_.paced() ? plan_.scheduled_ns(index_, cycle_) : now_;
    if (o == outcome::ok && plan_.run_mode == mode::churn && plan_.in_window(at)) ++tally_.cycles;
    last_outcome_ = o;
    close();
}

void connection::mark_up() noexcept {
    if (counted_up_) return;
    owner_.gauges().connected();
    counted_up_ = true;
}

void connection::close() noexcept {
    phase_ = phase::closing;
    deadline_ns_ = 0;
    if (counted_up_) owner_.gauges().disconnected();
    counted_up_ = false;
    asio::error_code ignored;
    socket_.close(ignored);  // pending waits complete with operation_aborted
    timer_.cancel();
    settle();
}

void connection::settle() noexcept {
    if (phase_ != phase::closing || pending_ != 0) return;
    next_cycle();
}

void connection::next_cycle() noexcept {
    const bool more = plan_.run_mode == mode::churn && !owner_.ended() &&
                      !(plan_.by_count() && measured_ >= plan_.quota(index_));
    if (!more) return retire();
    ++cycle_;
    if (plan_.paced()) {
        // Open loop: a cycle that is late starts at once, so the offered rate holds through a
        // stall instead of waiting for the server as a closed loop would.
        const std::int64_t at = plan_.scheduled_ns(index_, cycle_);
        if (at > now_ns()) return connect_at(at);
    }
    phase_ = phase::waiting;
    ++pending_;
    if (last_outcome_ != outcome::connect_error) {
        // Posted, not called: a server refusing at once must not recurse through this frame.
        asio::post(owner_.context(), [this] {
            --pending_;
            owner_.ended() ? retire() : connect();
        });
        return;
    }
    timer_.expires_after(connect_retry_delay);
    timer_.async_wait([this](const asio::error_code&) {
        --pending_;
        owner_.ended() ? retire() : connect();
    });
}

void connection::retire() noexcept {
    phase_ = phase::done;
    owner_.connection_done();
}

// ---- sending ----------------------------------------------------------------------------------

void connection::send() noexcept {
    if (write_blocked_ || shut_down_ || phase_ != phase::open) return;
    for (;;) {
        if (tx_done_ == tx_len_ && !refill()) break;
        asio::error_code ec;
        const std::size_t n =
            socket_.write_some(asio::buffer(tx_.data() + tx_done_, tx_len_ - tx_done_), ec);
        if (ec == asio::error::would_block) {
            write_blocked_ = true;
            ++pending_;
            socket_.async_wait(socket_type::wait_write, [this](const asio::error_code& e) {
                --pending_;
                on_writable(e);
            });
            return;
        }
        if (ec) return on_write_error(ec);
        tx_done_ += n;
        sent_bytes_ += n;
        moved_ = true;
        if (plan_.in_window(now_)) tally_.bytes_sent += n;
    }
    if (ending_ && send_off_ == 0 && send_msg_ >= allowed_) {
        asio::error_code ignored;
        socket_.shutdown(socket_type::shutdown_send, ignored);
        shut_down_ = true;
    }
}

bool connection::refill() noexcept {
    tx_len_ = tx_done_ = 0;
    while (tx_len_ < tx_.size() && send_msg_ < allowed_) {
        if (send_off_ == 0) {
            sent_at_ns_ = now_;
            if (plan_.run_mode == mode::bulk && plan_.by_count() && plan_.in_window(now_) &&
                ++measured_ == plan_.quota(index_)) {
                allowed_ = send_msg_ + 1;  // this chunk is the last
                ending_ = true;
            }
        }
        const std::size_t n = std::min(plan_.size - send_off_, tx_.size() - tx_len_);
        fill_pattern(message_key(id_, send_msg_), send_off_, tx_.subspan(tx_len_, n));
        tx_len_ += n;
        send_off_ += n;
        if (send_off_ == plan_.size) {
            send_off_ = 0;
            ++send_msg_;
        }
    }
    return tx_len_ > 0;
}

void connection::on_writable(const asio::error_code& ec) noexcept {
    write_blocked_ = false;
    if (phase_ == phase::closing) return settle();
    if (ec) return finish(classify(ec));
    now_ = now_ns();
    moved_ = false;
    send();
    if (phase_ == phase::open) update_deadline();
}

void connection::on_write_error(const asio::error_code& ec) noexcept {
    // A full server's clean close makes our write fail once its RST answers our bytes, but its
    // EOF is still there to read, and the EOF decides.
    receive();
    if (phase_ == phase::open) finish(classify(ec));
}

void connection::stop_sending() noexcept {
    allowed_ = send_msg_ + (send_off_ > 0 ? 1 : 0);
    ending_ = true;
    if (plan_.run_mode == mode::rate) timer_.cancel();
}

void connection::pace() noexcept {
    if (ending_ || suspect_) return;
    // Everything due by now may go, in one write if the server has fallen behind.
    allowed_ =
        std::max(allowed_, std::min(rate_end_, plan_.first_due_at_or_after(index_, now_ + 1)));
    if (allowed_ >= rate_end_) {
        ending_ = true;
        return;
    }
    timer_.expires_at(at_ns(plan_.scheduled_ns(index_, allowed_)));
    ++pending_;
    timer_.async_wait([this](const asio::error_code& ec) {
        --pending_;
        on_pace(ec);
    });
}

void connection::on_pace(const asio::error_code& ec) noexcept {
    if (phase_ == phase::closing) return settle();
    if (ec || phase_ != phase::open) return;  // cancelled by the end: nothing more to schedule
    now_ = now_ns();
    moved_ = false;
    pace();
    send();
    if (phase_ == phase::open) update_deadline();
}

// ---- receiving --------------------------------------------------------------------------------

void connection::wait_readable() noexcept {
    if (read_waiting_) return;
    read_waiting_ = true;
    ++pending_;
    // Every caller has just drained the socket (receive), so the wait can stay registered.
    read_wait_.start(owner_.reactor(), socket_);
}

void connection::on_read_ready(const asio::error_code& ec) noexcept {
    --pending_;
    on_readable(ec);
}

void connection::on_readable(const asio::error_code& ec) noexcept {
    read_waiting_ = false;
    if (phase_ == phase::closing) return settle();
    now_ = now_ns();
    moved_ = false;
    if (ec) return finish(classify(ec));
    receive();
    proceed();
}

void connection::exchange() noexcept {
    receive();
    proceed();
}

void connection::proceed() noexcept {
    // What just came back may allow the next message (rr).
    if (phase_ == phase::open) send();
    if (phase_ != phase::open) return;
    wait_readable();
    update_deadline();
}

void connection::receive() noexcept {
    for (;;) {
        asio::error_code ec;
        bool drained = false;
        const std::size_t n =
            read_noting_rest(socket_.native_handle(), rx_.data(), rx_.size(), ec, drained);
        // Nothing left, not even a FIN: the next byte raises a new edge for the wait.
        if (ec == asio::error::would_block || !take(ec, n) || drained) return;
    }
}

bool connection::take(const asio::error_code& ec, std::size_t n) noexcept {
    if (ec == asio::error::eof) {
        on_eof();
        return false;
    }
    if (ec) {
        finish(classify(ec));
        return false;
    }
    // Timed per read, not per handler: an echo can be read in the handler that sent it.
    now_ = now_ns();
    moved_ = true;
    consume(rx_.first(n));
    return phase_ == phase::open;
}

void connection::consume(std::span<const std::byte> bytes) noexcept {
    recv_bytes_ += bytes.size();
    if (plan_.in_window(now_)) tally_.bytes_received += bytes.size();
    if (plan_.run_mode == mode::bulk && plan_.bulk_direction == direction::down) {
        proven_ = true;  // the server's bytes, not ours: nothing to check
        return;
    }
    if (suspect_) {
        if (recv_bytes_ > busy_line_limit) {
            ++tally_.mismatches;
            finish(outcome::other_error);
        }
        return;
    }
    // More bytes back than we sent cannot be an echo.
    if (recv_bytes_ > sent_bytes_) recv_ok_ = false;
    while (!bytes.empty()) {
        const std::size_t take = std::min(bytes.size(), plan_.size - recv_off_);
        if (recv_ok_ && !matches_pattern(message_key(id_, recv_msg_), recv_off_, bytes.first(take)))
            recv_ok_ = false;
        if (!recv_ok_ && !proven_) {
            // Not our bytes before any echo: a busy line if the EOF follows. Send nothing more
            // (and no half-close, which a misbehaving echo server would answer with EOF too).
            suspect_ = true;
            allowed_ = send_msg_ + (send_off_ > 0 ? 1 : 0);
            if (plan_.run_mode == mode::rate) timer_.cancel();
            return;
        }
        recv_off_ += take;
        bytes = bytes.subspan(take);
        if (recv_off_ == plan_.size) {
            on_echo();
            if (phase_ != phase::open) return;
        }
    }
}

void connection::on_echo() noexcept {
    ++tally_.msgs_all;
    if (!recv_ok_)
        ++tally_.mismatches;
    else if (!proven_) {
        proven_ = true;
        mark_up();
    }
    std::int64_t began = started_ns_;  // churn, hold: the whole connection, connect included
    bool counted = plan_.in_window(now_);
    if (plan_.run_mode == mode::rr) began = sent_at_ns_;
    if (plan_.paced()) {
        // From when the message (churn: the connection) was due, not when it started: a stalled
        // server shows in full.
        began = plan_.scheduled_ns(index_, plan_.run_mode == mode::rate ? recv_msg_ : cycle_);
        counted = plan_.in_window(began);
    }
    if (counted) {
        ++tally_.msgs;
        tally_.last_completion_ns = std::max(tally_.last_completion_ns, now_);
        if (plan_.run_mode != mode::bulk)
            tally_.latency.record(
                static_cast<std::uint64_t>(std::max<std::int64_t>(0, now_ - began)));
    }
    recv_off_ = 0;
    ++recv_msg_;
    recv_ok_ = true;

    switch (plan_.run_mode) {
        case mode::rr:
            if (counted) ++measured_;
            if (ending_) break;
            if (owner_.ended() || now_ >= plan_.measure_end_ns ||
                (plan_.by_count() && measured_ >= plan_.quota(index_)))
                stop_sending();
            else
                ++allowed_;
            break;
        case mode::churn:
            if (counted) ++measured_;
            finish(outcome::ok);
            break;
        case mode::rate:
        case mode::hold:
        case mode::bulk:
            break;
    }
}

void connection::on_eof() noexcept {
    if (suspect_) {
        ++tally_.busy_lines;
        return finish(outcome::refused_cleanly);
    }
    if (shut_down_ && (recv_bytes_ == sent_bytes_ || !echo_required())) return finish(outcome::ok);
    if (!proven_) {
        if (recv_bytes_ > 0) ++tally_.busy_lines;  // the start of a busy line, or of an echo
        return finish(outcome::refused_cleanly);
    }
    finish(outcome::closed_early);
}

bool connection::echo_required() const noexcept {
    return plan_.run_mode != mode::bulk || plan_.bulk_direction == direction::both;
}

void connection::update_deadline() noexcept {
    const bool waiting =
        write_blocked_ || shut_down_ || suspect_ || (echo_required() && recv_bytes_ < sent_bytes_);
    if (!waiting)
        deadline_ns_ = 0;
    else if (moved_ || deadline_ns_ == 0)
        deadline_ns_ = now_ + plan_.timeout_ns;
}

}  // namespace slabd::load
