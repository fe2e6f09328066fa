// Turns the configured upstreams into addresses to relay to: an IP address as it is, a name
// through the system's resolver (getaddrinfo: /etc/hosts, DNS), every address it returns. Names
// are looked up at start (one that does not resolve stops the start, as a bad address does), on
// each reload, and every resolve_interval; a lookup that fails keeps the addresses of the last one
// that worked. Only start-up waits for a lookup. Later ones run on Asio's lookup thread and
// complete on the control thread, so a slow DNS server stalls neither the admin endpoint nor a
// shard that shares the control thread (decision 29).
#pragma once

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "slabd/config/config.hpp"
#include "upstreams.hpp"

namespace slabd::server {

class upstream_resolver {
  public:
    using apply_function = std::function<void(const std::vector<upstreams::target>&)>;

    /// `apply` runs on the control thread with the new targets whenever a lookup after start
    /// changed them.
    upstream_resolver(asio::io_context& control, apply_function apply);

    /// Sets the list and the interval and returns the targets to serve. `at_start`: looks every
    /// name up now, waiting, and a name that does not resolve throws std::runtime_error. Else (a
    /// reload) every name is looked up again from now, and `apply` takes what changes: a name
    /// keeps its addresses meanwhile, and while a name new to the list has none yet, the targets
    /// returned are those served before.
    std::vector<upstreams::target> configure(const std::vector<config::endpoint>& list,
                                             std::chrono::milliseconds interval, bool at_start);
    /// On the control thread: looks names up again every interval from now on.
    void start();
    void stop() noexcept;
    /// Lookups that failed since start (each kept the last addresses): for /stats.
    [[nodiscard]] std::uint64_t failures() const noexcept {
        return failures_.load(std::memory_order_relaxed);
    }

  private:
    void schedule();
    void round();
    void resolved(const config::endpoint& name, const asio::error_code& ec,
                  const asio::ip::tcp::resolver::results_type& results);
    [[nodiscard]] std::vector<upstreams::target> targets() const;
    [[nodiscard]] bool has_names() const noexcept;

    apply_function apply_;
    asio::ip::tcp::resolver resolver_;
    asio::steady_timer timer_;
    std::vector<config::endpoint> list_;
    std::chrono::milliseconds interval_{0};
    std::map<std::string, std::vector<asio::ip::tcp::endpoint>> addresses_;  // by "name:port"
    std::size_t pending_ = 0;    // lookups of the round in flight
    bool reload_waits_ = false;  // a reload came while a round was in flight
    std::vector<upstreams::target> applied_;
    std::atomic<std::uint64_t> failures_{0};
    bool stopped_ = false;
};

}  // namespace slabd::server
