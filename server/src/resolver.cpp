#include "resolver.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <stdexcept>
#include <utility>

namespace slabd::server {

namespace {

bool is_name(const config::endpoint& e) {
    asio::error_code ec;
    (void)asio::ip::make_address(e.host, ec);
    return static_cast<bool>(ec);
}

std::string bracketed(const asio::ip::tcp::endpoint& e) {
    const std::string host = e.address().to_string();
    return (e.address().is_v6() ? "[" + host + "]" : host) + ":" + std::to_string(e.port());
}

std::vector<asio::ip::tcp::endpoint> addresses_of(
    const asio::ip::tcp::resolver::results_type& results) {
    std::vector<asio::ip::tcp::endpoint> out;
    for (const auto& r : results)
        if (std::ranges::find(out, r.endpoint()) == out.end()) out.push_back(r.endpoint());
    std::ranges::sort(out);  // the resolver's order changes from lookup to lookup; ours must not
    return out;
}

}  // namespace

upstream_resolver::upstream_resolver(asio::io_context& control, apply_function apply)
    : apply_(std::move(apply)), resolver_(control), timer_(control) {}

std::vector<upstreams::target> upstream_resolver::configure(
    const std::vector<config::endpoint>& list, std::chrono::milliseconds interval, bool at_start) {
    list_ = list;
    interval_ = interval;
    // A name the list no longer has is forgotten: if a later reload brings it back, its old
    // addresses may be stale by then.
    std::erase_if(addresses_, [this](const auto& entry) {
        return std::ranges::none_of(
            list_, [&](const config::endpoint& e) { return config::to_string(e) == entry.first; });
    });
    if (at_start) {
        for (const auto& e : list_) {
            if (!is_name(e)) continue;
            asio::error_code ec;
            const auto results = resolver_.resolve(e.host, std::to_string(e.port), ec);
            if (ec)
                throw std::runtime_error("proxy.upstreams: " + config::to_string(e) +
                                         " does not resolve: " + ec.message());
            addresses_[config::to_string(e)] = addresses_of(results);
        }
        return applied_ = targets();
    }
    // A name new to this reload has no address until its lookup answers: until then the
    // upstreams serve as they were (a renamed backend would else have none meanwhile), and the
    // round's answer applies the whole list. Without a new name the list applies now.
    const bool awaits_new_name = std::ranges::any_of(list_, [this](const config::endpoint& e) {
        return is_name(e) && !addresses_.contains(config::to_string(e));
    });
    if (!awaits_new_name) applied_ = targets();
    // The names are looked up again at once, and a new interval counts from now; after the round
    // in flight, if there is one.
    if (pending_ != 0)
        reload_waits_ = true;
    else if (!stopped_)
        round();
    return applied_;
}

void upstream_resolver::start() {
    schedule();
}

void upstream_resolver::stop() noexcept {
    stopped_ = true;
    timer_.cancel();
    resolver_.cancel();
}

bool upstream_resolver::has_names() const noexcept {
    return std::ranges::any_of(list_, is_name);
}

void upstream_resolver::schedule() {
    timer_.cancel();
    if (interval_.count() == 0 || !has_names()) return;
    timer_.expires_after(interval_);
    timer_.async_wait([this](const asio::error_code& ec) {
        if (!ec && !stopped_) round();
    });
}

void upstream_resolver::round() {
    if (pending_ != 0) return;  // the last round is still waiting on a lookup
    for (const auto& e : list_) {
        if (!is_name(e)) continue;
        ++pending_;
        // Asio runs getaddrinfo on a thread of its own and completes here, on the control thread.
        resolver_.async_resolve(
            e.host, std::to_string(e.port),
            [this, e](const asio::error_code& ec, const asio::ip::tcp::resolver::results_type& r) {
                resolved(e, ec, r);
            });
    }
    schedule();
}

void upstream_resolver::resolved(const config::endpoint& name, const asio::error_code& ec,
                                 const asio::ip::tcp::resolver::results_type& results) {
    --pending_;
    if (ec == asio::error::operation_aborted) return;  // stop()
    // A name that a reload removed while it was looked up is not noted, but its answer may still
    // be the round's last.
    if (std::ranges::find(list_, name) != list_.end()) {
        const std::string key = config::to_string(name);
        if (ec) {
            failures_.fetch_add(1, std::memory_order_relaxed);
            spdlog::warn(
                "resolve: {} does not resolve ({}); {}", key, ec.message(),
                addresses_.contains(key) ? "keeping its last addresses" : "it has no address yet");
        } else {
            addresses_[key] = addresses_of(results);
        }
    }
    if (pending_ != 0) return;
    // A reload came while this round was in flight: its own round runs now, and its answer
    // applies its list (applied now, a name new to it would have no address meanwhile).
    if (std::exchange(reload_waits_, false) && !stopped_) return round();
    if (auto next = targets(); next != applied_) {
        applied_ = std::move(next);
        apply_(applied_);
    }
}

std::vector<upstreams::target> upstream_resolver::targets() const {
    std::vector<upstreams::target> out;
    for (const auto& e : list_) {
        const std::string key = config::to_string(e);
        if (!is_name(e)) {
            out.push_back({key, {asio::ip::make_address(e.host), e.port}});
            continue;
        }
        const auto found = addresses_.find(key);
        if (found == addresses_.end()) continue;
        for (const auto& a : found->second) out.push_back({key + " (" + bracketed(a) + ")", a});
    }
    return out;
}

}  // namespace slabd::server
