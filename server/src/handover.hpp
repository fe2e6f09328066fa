// Restart without refusing anyone (docs/design.md, decision 16): the running slabd hands its
// listening sockets, and its pidfile's locked descriptor, to a new process over a Unix socket
// (SCM_RIGHTS, as HAProxy's master does). Both then accept from the same kernel queues, so no
// connection attempt meets a closed port or is reset with a closed listener's backlog; once the
// new one serves it says so and the old one stops accepting and drains.
#pragma once

#include <asio/io_context.hpp>
#include <asio/local/stream_protocol.hpp>

#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace slabd::server {

/// What a new process took over. Owns the descriptors until they are given away (-1).
struct taken_over {
    taken_over() = default;
    taken_over(taken_over&& other) noexcept;
    taken_over& operator=(taken_over&& other) noexcept;
    ~taken_over();

    std::vector<int> data;  // one listener per shard of the old process
    int admin = -1;
    int pidfile = -1;  // the old process's locked pidfile; -1 when it had none
    int channel = -1;  // to the old process: confirm_take_over() tells it to drain
    int old_pid = 0;

  private:
    void close() noexcept;
};

/// Connects to the handover socket at `path` and takes the listeners of the slabd serving it.
/// nullopt when none serves there (no file, or a stale one). Throws std::system_error when a
/// slabd answered but the handover failed: starting cold then would fail to bind anyway.
std::optional<taken_over> take_over(const std::string& path);
/// Tells the old process that this one accepts now, and closes the channel.
void confirm_take_over(taken_over& inherited) noexcept;

/// The running process's side, on the control thread: serves one handover at a time at `path`
/// (mode 0600, only to a peer of the same user). The descriptors stay this process's own.
class handover_listener {
  public:
    struct gift {
        std::vector<int> data;
        int admin = -1;
        int pidfile = -1;
    };
    /// Binds `path`, replacing a stale socket file; throws std::system_error.
    /// `handed_over` runs once a new process confirmed that it serves.
    handover_listener(asio::io_context& control, std::string path, gift what,
                      std::function<void(int new_pid)> handed_over);
    ~handover_listener();
    handover_listener(const handover_listener&) = delete;
    handover_listener& operator=(const handover_listener&) = delete;

    void start();
    /// Stops serving handovers. `remove_file`: this process is the last, so no socket file is
    /// left behind; after a handover the file is the new process's.
    void stop(bool remove_file) noexcept;

  private:
    using acceptor_type = asio::local::stream_protocol::acceptor;
    using socket_type = asio::local::stream_protocol::socket;

    void accept();
    void serve(socket_type& peer);

    std::string path_;
    gift what_;
    std::function<void(int)> handed_over_;
    acceptor_type acceptor_;
    std::optional<socket_type> pending_;  // the new process, until it confirms or goes away
    char confirm_[16] = {};               // the request line, then the confirmation
};

}  // namespace slabd::server
