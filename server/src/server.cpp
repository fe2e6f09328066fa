#include "server.hpp"

#include <spdlog/spdlog.h>
#include <unistd.h>
#include <asio/post.hpp>

#include <cassert>
#include <string>
#include <thread>
#include <vector>

#include "admin.hpp"
#include "daemon.hpp"
#include "health_check.hpp"
#include "resolver.hpp"
#include "shard.hpp"

namespace slabd::server {

namespace {

asio::ip::tcp::endpoint resolve(const config::endpoint& e) {
    // Literal addresses only (config validates it): start-up never waits on DNS.
    return {asio::ip::make_address(e.host == "localhost" ? "127.0.0.1" : e.host), e.port};
}

std::int64_t now_ns() noexcept {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

/// How many shards: one per thread asked for, or one per listener taken over.
std::size_t shard_count(const config::Config& c, const handover_setup& h) noexcept {
    return std::max<std::size_t>(1, h.inherited ? h.inherited->data.size() : c.threads);
}

/// The shards' io_contexts, then the control work's, which a lone shard shares.
std::vector<std::unique_ptr<asio::io_context>> make_contexts(std::size_t shards) {
    std::vector<std::unique_ptr<asio::io_context>> out;
    for (std::size_t i = 0; i < shards; ++i)
        out.push_back(std::make_unique<asio::io_context>(shard_concurrency_hint));
    if (shards > 1) out.push_back(std::make_unique<asio::io_context>(1));
    return out;
}

health_check_settings health_check_of(const config::Config& c) {
    return {c.check_interval, std::min(c.check_timeout, c.check_interval),
            c.check_rise,     c.check_fall,
            c.check_send,     c.check_expect};
}

std::uint32_t effective_burst(const config::Config& c) noexcept {
    return c.accept_burst > 0 ? c.accept_burst : c.accept_rate;
}

/// What each shard reads of the settings that a reload may change.
live_settings live_settings_of(const config::Config& c) {
    std::vector<network> trusted;
    for (const auto& text : c.trusted_sources) trusted.push_back(network::parse(text));
    return {c.idle_timeout,         c.connect_timeout,  c.busy_message, c.evict_idle_after,
            c.source_prefix_v4,     c.source_prefix_v6, c.accept_proxy, std::move(trusted),
            c.proxy_header_timeout, c.send_proxy};
}

}  // namespace

server::server(const config::Config& settings, handover_setup handover)
    : settings_(settings),
      connections_(settings.max_connections, config::effective_pool_reserve(settings)),
      contexts_(make_contexts(shard_count(settings, handover))),
      control_(*contexts_.back()),
      signals_(control_, SIGINT, SIGTERM),
      operator_signals_(control_, SIGHUP, SIGUSR2),
      history_timer_(control_),
      handover_(std::move(handover)) {
    auto& inherited = handover_.inherited;
    if (inherited && inherited->data.size() != settings_.threads) {
        // Each listener is one shard's: leaving one unserved would strand its queue.
        spdlog::warn(
            "server.threads {} ignored: took over {} listeners, so {} threads; a stop and start "
            "changes it",
            settings_.threads, inherited->data.size(), inherited->data.size());
        settings_.threads = static_cast<unsigned>(inherited->data.size());
    }
    const auto threads = static_cast<unsigned>(shard_count(settings_, handover_));
    history_ = std::make_unique<history>(threads);
    history_shards_.resize(threads);
    const std::size_t reserve = connections_.reserved();
    if (settings_.mode == config::server_mode::proxy) {
        // A spare leg per shard: a shard takes its leg before its connection block (shard::admit).
        legs_ = std::make_unique<leg_pool>(settings_.max_connections + threads, reserve + threads);
        resolver_ = std::make_unique<upstream_resolver>(
            control_,
            [this](const std::vector<upstreams::target>& targets) { apply_resolved(targets); });
        upstreams_ = std::make_unique<upstreams>(
            resolver_->configure(settings_.upstreams, settings_.resolve_interval, true),
            settings_.balance, settings_.upstream_fail_timeout);
        health_ =
            std::make_unique<health_checker>(control_, *upstreams_, health_check_of(settings_));
    }
    // Both exist even while off, so that a reload can turn them on: the table is reserved address
    // space until a source is counted. Room for every block the pool may grow to, plus one
    // newcomer per shard.
    sources_ = std::make_unique<source_table>(settings_.max_per_source, reserve + threads);
    accept_rate_ =
        std::make_unique<accept_rate_limiter>(settings_.accept_rate, effective_burst(settings_));
    connection_log_ = std::make_unique<connection_log>(
        threads, settings_.log_connections, settings_.log_connections_rate, [this] {
            std::uint64_t skipped = 0;
            for (const auto& s : shards_)
                skipped += s->stats().connection_log_skipped.load(std::memory_order_relaxed);
            return skipped;
        });
    const std::size_t buffers_per_shard =
        std::max<std::size_t>(1, settings_.buffer_count / threads);
    // Only a proxy has two sockets to splice between.
    const std::size_t pipes_per_shard =
        settings_.mode == config::server_mode::proxy ? settings_.splice_pipes : 0;
    asio::ip::tcp::endpoint at = resolve(settings_.listen);
    const shard_setup setup{connections_, legs_.get(), upstreams_.get(), *this,
                            settings_.on_exhausted, live_settings_of(settings_), buffers_per_shard,
                            settings_.buffer_size, pipes_per_shard,
                            // As many lingering closes at once as a quarter of the connections.
                            std::max<std::size_t>(16, settings_.max_connections / threads / 4),
                            *sources_, *accept_rate_, *connection_log_};
    for (unsigned i = 0; i < threads; ++i) {
        shards_.push_back(
            std::make_unique<shard>(setup, static_cast<std::uint16_t>(i), *contexts_[i]));
        if (inherited) {
            shards_.back()->adopt(std::exchange(inherited->data[i], -1));
            continue;
        }
        shards_.back()->listen(at);
        at = shards_.front()->local_endpoint();  // port 0: the others join the port the first got
    }
    if (inherited) {
        const auto took = shards_.front()->local_endpoint();
        if (took.address() != at.address() || (at.port() != 0 && took.port() != at.port()))
            throw std::runtime_error(
                "server.listen " + config::to_string(settings_.listen) +
                " is not where the listeners taken over from pid " +
                std::to_string(inherited->old_pid) + " listen (" + took.address().to_string() +
                ":" + std::to_string(took.port()) +
                "): a take-over keeps the listeners; stop and start slabd to move them");
    }
    undrained_ = shards_.size();
    warn_if_pipes_shrunk();
    if (inherited && inherited->admin >= 0)
        admin_ = std::make_unique<admin>(control_, std::exchange(inherited->admin, -1), *this);
    else
        admin_ = std::make_unique<admin>(control_, resolve(settings_.admin), *this);
}

server::~server() = default;

void server::warn_if_pipes_shrunk() const {
    // The kernel's default pipe holds 16 pages; past a user's pipe-page budget it makes 2.
    const std::size_t full = 16 * static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    for (const auto& s : shards_) {
        const std::size_t smallest = s->pipes().smallest();
        if (smallest == 0 || smallest >= full) continue;
        spdlog::warn(
            "splice pipes of {} bytes instead of {}: this user's pipe-page budget "
            "(sysctl fs.pipe-user-pages-soft) is spent, so bulk relaying takes more "
            "system calls; lower proxy.splice_pipes or raise the budget",
            smallest, full);
        return;
    }
}

asio::ip::tcp::endpoint server::data_endpoint() const {
    return shards_.front()->local_endpoint();
}
asio::ip::tcp::endpoint server::admin_endpoint() const {
    return admin_->local_endpoint();
}

void server::run() {
    signals_.async_wait([this](const asio::error_code& ec, int signo) {
        if (ec) return;
        spdlog::info("received signal {}, draining (grace {} ms)", signo,
                     settings_.shutdown_grace.count());
        request_stop();
    });
    watch_operator_signals();
    admin_->start();

    connection_log_->start();
    static_assert(history::upstream_slots >= upstreams::max_slots, "history keeps every slot");
    asio::post(control_, [this] {
        serve_handovers();
        if (health_ != nullptr) health_->start();
        if (resolver_ != nullptr) resolver_->start();
        sample_history();
    });
    if (shards_.size() == 1) {
        shards_.front()->run();
    } else {
        std::vector<std::thread> threads;
        for (auto& s : shards_) threads.emplace_back([&s] { s->run(); });
        control_.run();
        for (auto& t : threads) t.join();
    }
    connection_log_->stop();
}

void server::drained() noexcept {
    if (undrained_.fetch_sub(1) == 1) asio::post(control_, [this] { stop_control(); });
}

void server::stop_control() {
    asio::error_code ignored;
    signals_.cancel(ignored);
    operator_signals_.cancel(ignored);
    admin_->stop();
    if (handover_listener_ != nullptr) handover_listener_->stop(true);
    if (health_ != nullptr) health_->stop();
    if (resolver_ != nullptr) resolver_->stop();
    history_timer_.cancel();
    // Keep-alive admin sessions would otherwise keep run() going. A lone shard shares the
    // io_context, and stopping it leaves nothing of the shard's behind: it has drained, so all
    // it had queued is what the drain cancelled, which was queued first and has run.
    control_.stop();
}

void server::serve_handovers() {
    if (auto& inherited = handover_.inherited) {
        confirm_take_over(*inherited);
        // Under systemd (NotifyAccess=all) this process is the service's main one from now on.
        notify_systemd(("MAINPID=" + std::to_string(::getpid()) + "\nREADY=1").c_str());
        spdlog::info("handover: took over the listeners of pid {}, which drains now",
                     inherited->old_pid);
        inherited.reset();
    }
    if (settings_.handover_socket.empty() || draining_.load()) return;
    handover_listener::gift what;
    for (auto& s : shards_) what.data.push_back(s->native_listener());
    what.admin = admin_->native_handle();
    what.pidfile = handover_.pidfile;
    try {
        handover_listener_ = std::make_unique<handover_listener>(
            control_, settings_.handover_socket, std::move(what),
            [this](int new_pid) { handed_over(new_pid); });
        handover_listener_->start();
    } catch (const std::system_error& e) {
        spdlog::error(
            "cannot serve handovers at {}: {}; a restart will have to stop this process first",
            settings_.handover_socket, e.what());
    }
}

void server::handed_over(int new_pid) {
    handed_over_ = true;
    spdlog::info("handover: pid {} serves the listeners now; draining (grace {} ms)", new_pid,
                 settings_.shutdown_grace.count());
    if (handover_.release_pidfile) handover_.release_pidfile();
    handover_listener_->stop(false);
    // The listeners live on in the new process: closing ours here only stops us taking newcomers.
    admin_->stop();
    request_stop();
}

void server::request_stop() {
    if (draining_.exchange(true)) return;
    // After a handover the service goes on in the new process, which told systemd its pid.
    if (!handed_over_) notify_systemd("STOPPING=1");
    for (auto& s : shards_) s->begin_drain(settings_.shutdown_grace);
}

void server::watch_operator_signals() {
    operator_signals_.async_wait([this](const asio::error_code& ec, int signo) {
        if (ec) return;
        if (signo == SIGHUP && on_hangup_) on_hangup_();
        if (signo == SIGUSR2) start_successor();
        watch_operator_signals();
    });
}

void server::start_successor() {
    if (settings_.handover_socket.empty()) {
        spdlog::error("SIGUSR2: a restart in place needs daemon.handover_socket; nothing done");
        return;
    }
    if (draining_.load()) {
        spdlog::warn("SIGUSR2: already draining; nothing done");
        return;
    }
    try {
        const int pid = spawn_successor(successor_.program, successor_.args);
        spdlog::info("SIGUSR2: started pid {} ({}), which takes over the listeners", pid,
                     successor_.program);
    } catch (const std::system_error& e) {
        spdlog::error("SIGUSR2: {}; still serving", e.what());
    }
}

void server::reload(const config::Config& next) {
    ++reloads_;
    std::vector<std::string> changed;
    // Each change is logged as the file spells the values (the settings list's own formatting),
    // so a log line reads like the config it came from.
    const auto adopt = [this, &changed](auto& field, const auto& value, std::string_view name) {
        // The settings list says which keys a reload applies (--help, to_toml and the README
        // follow it); this is where it does, and the two must agree (test_reload.py checks each).
        assert(config::applies_at_reload(name));
        if (field == value) return;
        const std::string before = config::setting_literal(settings_, name);
        field = value;
        changed.push_back(std::string(name) + " " + before + " -> " +
                          config::setting_literal(settings_, name));
    };
    adopt(settings_.log_level, next.log_level, "log.level");
    adopt(settings_.log_connections, next.log_connections, "log.connections");
    adopt(settings_.log_connections_rate, next.log_connections_rate, "log.connections_rate");
    adopt(settings_.idle_timeout, next.idle_timeout, "timeouts.idle");
    adopt(settings_.connect_timeout, next.connect_timeout, "timeouts.connect");
    adopt(settings_.busy_message, next.busy_message, "pool.busy_message");
    adopt(settings_.evict_idle_after, next.evict_idle_after, "pool.evict_idle_after");
    // Past the reservation the pool cannot grow in place: that stays a restart.
    if (next.max_connections != settings_.max_connections && resize_pool(next.max_connections))
        adopt(settings_.max_connections, next.max_connections, "pool.max_connections");
    // Turned on, the per-source limit counts newcomers from then on; connections already open
    // are not counted. Sources keep the key they were counted under, so a new prefix is safe.
    adopt(settings_.max_per_source, next.max_per_source, "limits.max_per_source");
    adopt(settings_.source_prefix_v4, next.source_prefix_v4, "limits.source_prefix_v4");
    adopt(settings_.source_prefix_v6, next.source_prefix_v6, "limits.source_prefix_v6");
    adopt(settings_.accept_rate, next.accept_rate, "limits.accept_rate");
    adopt(settings_.accept_burst, next.accept_burst, "limits.accept_burst");
    // PROXY protocol: each connection reads these once, as it starts or connects.
    adopt(settings_.accept_proxy, next.accept_proxy, "server.accept_proxy");
    adopt(settings_.trusted_sources, next.trusted_sources, "server.trusted_sources");
    adopt(settings_.proxy_header_timeout, next.proxy_header_timeout, "timeouts.proxy_header");
    if (next.mode == settings_.mode)
        adopt(settings_.send_proxy, next.send_proxy, "proxy.send_proxy");
    if (upstreams_ != nullptr && next.mode == config::server_mode::proxy) {
        adopt(settings_.balance, next.balance, "proxy.balance");
        adopt(settings_.upstream_fail_timeout, next.upstream_fail_timeout, "proxy.fail_timeout");
        upstreams_->set_policy(settings_.balance, settings_.upstream_fail_timeout);
        adopt(settings_.resolve_interval, next.resolve_interval, "proxy.resolve_interval");
        const auto what = replace_upstreams(
            resolver_->configure(next.upstreams, settings_.resolve_interval, false), "reload");
        for (const auto& name : what.added) changed.push_back("proxy.upstreams: added " + name);
        for (const auto& name : what.removed)
            changed.push_back("proxy.upstreams: removed " + name + " (its relays finish)");
        if (what.no_room.empty()) settings_.upstreams = next.upstreams;
        adopt(settings_.check_interval, next.check_interval, "health_check.interval");
        adopt(settings_.check_timeout, next.check_timeout, "health_check.timeout");
        adopt(settings_.check_rise, next.check_rise, "health_check.rise");
        adopt(settings_.check_fall, next.check_fall, "health_check.fall");
        adopt(settings_.check_send, next.check_send, "health_check.send");
        adopt(settings_.check_expect, next.check_expect, "health_check.expect");
        health_->update(health_check_of(settings_));
    }
    // Read only on this thread, by the admin endpoint (ready_headroom is not: snapshot() reads
    // it, and snapshot() may be called from any thread).
    adopt(settings_.admin_token, next.admin_token, "admin.token");

    // Whatever still differs after adopting the above applies only at the next start.
    const std::vector<std::string> restart = config::differing_settings(settings_, next);
    std::string restart_list;
    for (const auto& name : restart) restart_list += restart_list.empty() ? name : ", " + name;

    spdlog::set_level(spdlog::level::from_str(settings_.log_level));
    for (auto& s : shards_) s->update(live_settings_of(settings_));
    sources_->set_limit(settings_.max_per_source);
    accept_rate_->configure(settings_.accept_rate, effective_burst(settings_));
    connection_log_->configure(settings_.log_connections, settings_.log_connections_rate);
    if (changed.empty()) spdlog::info("reload: no setting changed that applies at run time");
    for (const auto& line : changed) spdlog::info("reload: changed {}", line);
    if (!restart.empty())
        spdlog::warn("reload: changed but only a restart applies: {}", restart_list);
    ++last_reloads_.applied;
    last_reloads_.last = "applied";
    last_reloads_.changed = std::move(changed);
    last_reloads_.needs_restart = restart;
}

void server::reload_rejected(const std::string& why) {
    ++last_reloads_.rejected;
    last_reloads_.last = "rejected";
    last_reloads_.error = why;
}

bool server::resize_pool(std::size_t limit) {
    if (limit > connections_.reserved()) {
        spdlog::warn(
            "reload: pool.max_connections {} is past pool.reserve {}: only a restart can grow "
            "the pool that far",
            limit, connections_.reserved());
        return false;
    }
    const unsigned threads = static_cast<unsigned>(shards_.size());
    if (limit > connections_.capacity()) {
        const std::size_t more = limit - connections_.capacity();
        // Both fit: the reservations were sized together, the legs' with a spare per shard.
        connections_.add_memory(more);
        if (legs_ != nullptr) legs_->add_memory(limit + threads - legs_->capacity());
    }
    connections_.set_limit(limit);
    if (legs_ != nullptr) legs_->set_limit(limit + threads);
    config::Config grown = settings_;
    grown.max_connections = limit;
    warn_if_descriptors_short(grown);
    // A shard paused on a full pool waits for a freed block; room under a raised limit is one.
    wake_paused_shards();
    return true;
}

upstreams::change server::replace_upstreams(const std::vector<upstreams::target>& targets,
                                            const char* by) {
    auto what = upstreams_->replace(targets, ++upstream_epoch_);
    for (const auto& name : what.no_room)
        spdlog::warn(
            "{}: no room for upstream {}: {} slots hold upstreams or removed ones still relaying; "
            "reload again once they finish, or restart",
            by, name, upstreams::max_slots);
    if (!what.removed.empty()) fence_upstreams(upstream_epoch_);
    return what;
}

void server::apply_resolved(const std::vector<upstreams::target>& targets) {
    const auto what = replace_upstreams(targets, "resolve");
    for (const auto& name : what.added) spdlog::info("resolve: upstream {} added", name);
    for (const auto& name : what.removed)
        spdlog::info("resolve: upstream {} removed (its relays finish)", name);
}

void server::fence_upstreams(std::uint64_t reload) {
    // Every shard runs a handler posted after the retirement: any pick that saw the removed
    // upstream serving has finished and claimed it by then, so its `active` tells the rest.
    auto pending = std::make_shared<std::atomic<std::size_t>>(shards_.size());
    for (auto& s : shards_) {
        asio::post(s->context(), [this, pending, reload] {
            if (pending->fetch_sub(1) == 1)
                asio::post(control_, [this, reload] { upstreams_->fenced(reload); });
        });
    }
}

void server::notify_fork(asio::execution_context::fork_event event) {
    for (auto& c : contexts_) c->notify_fork(event);
}

void server::wake_paused_shards() noexcept {
    for (auto& s : shards_) s->notify_block_freed();
}

void server::refused(refusal_reason why) noexcept {
    // At most one line a second, carrying how many were refused since the last one, by reason.
    refusals_unlogged_[static_cast<std::size_t>(why)].fetch_add(1, std::memory_order_relaxed);
    log_refusals_if_due();
}

void server::log_refusals_if_due() noexcept {
    const std::int64_t now = now_ns();
    std::int64_t due = next_refusal_log_.load(std::memory_order_relaxed);
    if (now < due || !next_refusal_log_.compare_exchange_strong(due, now + 1'000'000'000)) return;
    for (std::size_t i = 0; i < refusals_unlogged_.size(); ++i) {
        const std::uint64_t n = refusals_unlogged_[i].exchange(0, std::memory_order_relaxed);
        if (n == 0) continue;
        spdlog::warn("refused {} connection(s): {} ({} of {} pool blocks in use)", n,
                     refusal_names[i], connections_.in_use(), connections_.limit());
    }
}

void server::accept_failed(const asio::error_code& ec) noexcept {
    const std::int64_t now = now_ns();
    std::int64_t due = next_accept_error_log_.load(std::memory_order_relaxed);
    if (now < due || !next_accept_error_log_.compare_exchange_strong(due, now + 1'000'000'000))
        return;
    spdlog::warn("accept failed: {}", ec.message());
}

void server::sample_history() {
    history::sample s;
    s.unix_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                    std::chrono::system_clock::now().time_since_epoch())
                    .count();
    const pool::slab_stats pool = connections_.stats();
    s.pool_in_use = pool.in_use;
    s.pool_capacity = pool.capacity;
    s.pool_limit = pool.limit;
    s.ready_headroom = config::effective_ready_headroom(settings_);
    for (std::size_t i = 0; i < shards_.size(); ++i) {
        const shard_snapshot sh = ::slabd::server::snapshot(shards_[i]->stats());
        history::shard_sample& out = history_shards_[i];
        out.active = sh.active;
        out.accepted = sh.accepted;
        for (std::size_t r = 0; r < refusal_reasons; ++r)
            out.refused[r] = sh.refused(static_cast<refusal_reason>(r));
        out.bytes_in = sh.bytes_in;
        out.bytes_out = sh.bytes_out;
        out.buffers_in_use = shards_[i]->buffer_stats().in_use;
    }
    std::size_t slots = 0;
    if (upstreams_ != nullptr) {
        slots = std::min(upstreams_->slots_used(), history::upstream_slots);
        for (std::size_t i = 0; i < slots; ++i) {
            const auto& u = upstreams_->at(i);
            const auto status = u.status.load(std::memory_order_relaxed);
            history_upstreams_[i].generation = u.generation;
            history_upstreams_[i].state =
                status == upstreams::state::empty     ? history::upstream_state::none
                : status == upstreams::state::retired ? history::upstream_state::removed
                : u.checked_down.load(std::memory_order_relaxed) || upstreams_->is_down(u)
                    ? history::upstream_state::down
                    : history::upstream_state::up;
        }
    }
    history_->record(s, history_shards_, std::span(history_upstreams_).first(slots));

    history_timer_.expires_after(std::chrono::milliseconds(history::interval_ms));
    history_timer_.async_wait([this](const asio::error_code& ec) {
        if (!ec) sample_history();
    });
}

std::string server::history_json(std::uint64_t since) const {
    std::vector<history::upstream_now> now;
    if (upstreams_ != nullptr) {
        for (std::size_t i = 0; i < std::min(upstreams_->slots_used(), history::upstream_slots);
             ++i) {
            const auto& u = upstreams_->at(i);
            const bool empty = u.status.load(std::memory_order_acquire) == upstreams::state::empty;
            now.push_back({empty ? std::string() : u.name, u.generation});
        }
    }
    return history_->to_json(since, now);
}

std::string server::slab_map_json() {
    const auto now = std::chrono::steady_clock::now();
    if (slab_map_.empty() || now - slab_map_at_ >= std::chrono::seconds(1)) {
        slab_map_ =
            ::slabd::server::slab_map_json(connections_.map(slab_map_cells), connections_.limit());
        slab_map_at_ = now;
    }
    return slab_map_;
}

namespace {
// /stats lists this many of the sources holding the most connections.
constexpr std::size_t top_sources_shown = 10;
}  // namespace

server_snapshot server::snapshot(bool with_top_sources) const {
    server_snapshot s;
    s.version = SLABD_VERSION;
    s.mode = settings_.mode == config::server_mode::echo ? "echo" : "proxy";
    s.uptime_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
    s.threads = static_cast<unsigned>(shards_.size());
    s.pool = connections_.stats();
    s.buffer_size = settings_.buffer_size;
    s.buffers.block_size = settings_.buffer_size;
    for (const auto& sh : shards_) {
        s.shards.push_back(::slabd::server::snapshot(sh->stats()));
        s.buffers += sh->buffer_stats();
    }
    s.op_memory_overflows = op_memory_overflows.load(std::memory_order_relaxed);
    if (resolver_ != nullptr) s.upstream_resolve_failures = resolver_->failures();
    s.draining = draining_.load();
    s.ready_headroom = config::effective_ready_headroom(settings_);
    s.admin = admin_->stats();
    s.limits.max_per_source = settings_.max_per_source;
    s.limits.accept_rate = settings_.accept_rate;
    s.limits.sources = sources_->sources();
    if (with_top_sources) {
        for (const auto& holder : sources_->top(top_sources_shown)) {
            s.limits.top_sources.push_back(
                {to_string(holder.key, settings_.source_prefix_v4, settings_.source_prefix_v6),
                 holder.connections});
        }
    }
    s.reload = last_reloads_;
    if (upstreams_ != nullptr) {
        for (std::size_t i = 0; i < upstreams_->slots_used(); ++i) {
            const auto& u = upstreams_->at(i);
            const auto status = u.status.load(std::memory_order_relaxed);
            const auto active = u.active.load(std::memory_order_relaxed);
            // A removed upstream is shown until its last relay has finished.
            if (status == upstreams::state::empty ||
                (status == upstreams::state::retired && active == 0))
                continue;
            const bool checked_down = u.checked_down.load(std::memory_order_relaxed);
            s.upstreams.push_back(
                {u.name, active, u.connect_failures.load(std::memory_order_relaxed),
                 checked_down || upstreams_->is_down(u), status == upstreams::state::retired,
                 checked_down,
                 upstreams::check_result_names[static_cast<std::size_t>(u.last_check.load())],
                 u.last_check_us.load(), u.transitions.load(), u.failures_in_row.load()});
        }
    }
    return s;
}

}  // namespace slabd::server
