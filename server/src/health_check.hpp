// Active health checks of the proxy's upstreams: every interval, a TCP connect to each serving
// upstream (and, when configured, a request sent and an expected answer read) on the control
// thread, never on a data thread. `fall` failures in a row mark an upstream down, and it takes no
// new clients; `rise` successes in a row bring it back. A failed connect of a real client adds to
// the same count of failures in a row, which only a check turns into a verdict.
#pragma once

#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "upstreams.hpp"

namespace slabd::server {

struct health_check_settings {
    std::chrono::milliseconds interval{0};  // 0: no active checks
    std::chrono::milliseconds timeout{0};
    std::uint32_t rise = 1;
    std::uint32_t fall = 1;
    std::string send;    // written once connected; empty: a connect is the whole check
    std::string expect;  // must appear in what the upstream answers; empty: nothing is read
};

class health_checker {
  public:
    health_checker(asio::io_context& control, upstreams& list, health_check_settings settings);
    ~health_checker();
    health_checker(const health_checker&) = delete;
    health_checker& operator=(const health_checker&) = delete;

    /// On the control thread: checks from now on, every interval.
    void start();
    /// On the control thread (reload): new settings from the next round on; an upstream that
    /// checks turned off for is up again.
    void update(health_check_settings settings);
    /// On the control thread: no check starts any more (the drain).
    void stop() noexcept;

  private:
    struct probe;

    void round();
    void check(std::size_t slot);
    void read_answer(const std::shared_ptr<probe>& p);
    void finish(const std::shared_ptr<probe>& p, upstreams::check_result result);

    asio::io_context& control_;
    upstreams& list_;
    health_check_settings settings_;
    asio::steady_timer timer_;
    bool stopped_ = false;
};

}  // namespace slabd::server
