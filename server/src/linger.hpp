// Lingering close (nginx's lingering_close; docs/design.md, decision 13). Closing a socket whose
// peer is still sending makes the kernel answer with RST and drop what is still queued toward the
// peer. A lingering socket is shut down for writing (FIN after every queued byte), then read and
// discarded until the peer's EOF or a deadline, then closed.
#pragma once

#include <cstdint>

#include "op_memory.hpp"
#include "slabd/pool/object_pool.hpp"
#include "slabd/server/stats.hpp"
#include "socket.hpp"

namespace slabd::server {

class linger_pool {
  public:
    /// `slots` sockets may linger at once on `context`, each for at most `ticks` ticks of the
    /// shard clock.
    linger_pool(asio::io_context& context, shard_stats& stats, std::size_t slots,
                std::uint32_t ticks);
    ~linger_pool();
    linger_pool(const linger_pool&) = delete;
    linger_pool& operator=(const linger_pool&) = delete;

    /// Takes the non-blocking socket `fd` over and closes it once the peer is done; with every
    /// slot taken, closes it at once (close_now) and counts that.
    void linger(int fd, std::uint32_t now) noexcept;
    /// Closes the sockets whose deadline has passed; the shard calls it every tick.
    void expire(std::uint32_t now) noexcept;
    /// Closes every lingering socket (the io_context is about to go).
    void close_all() noexcept;
    [[nodiscard]] bool empty() const noexcept { return head_ == nullptr; }

  private:
    struct slot;
    struct wait_handler;

    void drain(slot& s) noexcept;
    void on_readable(slot& s, const asio::error_code& ec) noexcept;
    void finish(slot& s) noexcept;
    void close_oldest() noexcept;

    asio::io_context& context_;
    shard_stats& stats_;
    std::uint32_t ticks_;
    slot* head_ = nullptr;  // oldest first: every socket lingers as long, so this is deadline order
    slot* tail_ = nullptr;
    pool::object_pool<slot> slots_;
};

}  // namespace slabd::server
