#include "handover.hpp"

#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <asio/read.hpp>

#include <array>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <string_view>
#include <system_error>
#include <utility>

namespace slabd::server {

namespace {

// The new process asks, the old one answers with the descriptors, the new one confirms.
constexpr std::string_view request_line = "take-over\n";
constexpr std::string_view confirm_line = "ready\n";
constexpr std::string_view header_prefix = "slabd-handover 1";
// One listener per shard (at most 1024 threads), the admin listener and the pidfile.
constexpr std::size_t max_descriptors = 1024 + 2;
// How long a new process waits for the old one's answer before it gives up starting.
constexpr timeval answer_timeout{10, 0};

std::system_error os_error(const std::string& what) {
    return {errno, std::generic_category(), what};
}

sockaddr_un address_of(const std::string& path) {
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    if (path.size() >= sizeof address.sun_path)
        throw std::system_error(std::make_error_code(std::errc::filename_too_long),
                                "handover socket " + path);
    std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
    return address;
}

/// "key=N" from the header; -1 when it is missing or malformed.
int field(std::string_view header, std::string_view key) {
    const std::string needle = " " + std::string(key) + "=";
    const auto at = header.find(needle);
    if (at == std::string_view::npos) return -1;
    int value = -1;
    const char* first = header.data() + at + needle.size();
    const auto [end, ec] = std::from_chars(first, header.data() + header.size(), value);
    return ec == std::errc{} && end != first ? value : -1;
}

void close_all(std::vector<int>& fds) noexcept {
    for (const int fd : fds)
        if (fd >= 0) ::close(fd);
    fds.clear();
}

}  // namespace

taken_over::taken_over(taken_over&& other) noexcept
    : data(std::move(other.data)),
      admin(std::exchange(other.admin, -1)),
      pidfile(std::exchange(other.pidfile, -1)),
      channel(std::exchange(other.channel, -1)),
      old_pid(other.old_pid) {}

taken_over& taken_over::operator=(taken_over&& other) noexcept {
    if (this != &other) {
        close();
        data = std::move(other.data);
        admin = std::exchange(other.admin, -1);
        pidfile = std::exchange(other.pidfile, -1);
        channel = std::exchange(other.channel, -1);
        old_pid = other.old_pid;
    }
    return *this;
}

taken_over::~taken_over() {
    close();
}

void taken_over::close() noexcept {
    close_all(data);
    for (int* fd : {&admin, &pidfile, &channel})
        if (*fd >= 0) ::close(std::exchange(*fd, -1));
}

std::optional<taken_over> take_over(const std::string& path) {
    const sockaddr_un address = address_of(path);
    taken_over got;
    got.channel = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (got.channel < 0) throw os_error("handover socket");
    if (::connect(got.channel, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
        // Nobody serves there: this is a cold start.
        if (errno == ENOENT || errno == ECONNREFUSED) return std::nullopt;
        throw os_error("cannot connect to the handover socket " + path);
    }
    ::setsockopt(got.channel, SOL_SOCKET, SO_RCVTIMEO, &answer_timeout, sizeof answer_timeout);
    if (::send(got.channel, request_line.data(), request_line.size(), MSG_NOSIGNAL) !=
        static_cast<ssize_t>(request_line.size()))
        throw os_error("cannot ask the running slabd for its listeners at " + path);

    std::array<char, 256> header{};
    iovec part{header.data(), header.size() - 1};
    std::vector<char> control(CMSG_SPACE(sizeof(int) * max_descriptors));
    msghdr message{};
    message.msg_iov = &part;
    message.msg_iovlen = 1;
    message.msg_control = control.data();
    message.msg_controllen = control.size();
    const ssize_t n = ::recvmsg(got.channel, &message, MSG_CMSG_CLOEXEC);
    if (n <= 0) {
        if (n == 0) errno = ECONNRESET;
        throw os_error("the running slabd at " + path + " did not hand over its listeners");
    }
    std::vector<int> fds;
    for (cmsghdr* c = CMSG_FIRSTHDR(&message); c != nullptr; c = CMSG_NXTHDR(&message, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        const std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        const auto* first = reinterpret_cast<const int*>(CMSG_DATA(c));
        for (std::size_t i = 0; i < count; ++i) {
            int fd;
            std::memcpy(&fd, first + i, sizeof fd);
            fds.push_back(fd);
        }
    }
    const std::string_view text(header.data(), static_cast<std::size_t>(n));
    const int data = field(text, "data");
    const int admin = field(text, "admin");
    const int pidfile = field(text, "pidfile");
    got.old_pid = field(text, "pid");
    if (!text.starts_with(header_prefix) || (message.msg_flags & MSG_CTRUNC) != 0 || data <= 0 ||
        admin < 0 || admin > 1 || pidfile < 0 || pidfile > 1 ||
        fds.size() != static_cast<std::size_t>(data + admin + pidfile)) {
        close_all(fds);
        throw std::system_error(std::make_error_code(std::errc::protocol_error),
                                "the handover from " + path + " is not one this slabd understands");
    }
    got.data.assign(fds.begin(), fds.begin() + data);
    if (admin == 1) got.admin = fds[static_cast<std::size_t>(data)];
    if (pidfile == 1) got.pidfile = fds.back();
    return got;
}

void confirm_take_over(taken_over& inherited) noexcept {
    if (inherited.channel < 0) return;
    if (::send(inherited.channel, confirm_line.data(), confirm_line.size(), MSG_NOSIGNAL) !=
        static_cast<ssize_t>(confirm_line.size()))
        spdlog::error(
            "could not tell pid {} that this process serves now ({}): it goes on serving too",
            inherited.old_pid, std::strerror(errno));
    ::close(std::exchange(inherited.channel, -1));
}

handover_listener::handover_listener(asio::io_context& control, std::string path, gift what,
                                     std::function<void(int)> handed_over)
    : path_(std::move(path)),
      what_(std::move(what)),
      handed_over_(std::move(handed_over)),
      acceptor_(control) {
    // The socket file is replaced, not shared: a process that took over binds it anew.
    address_of(path_);
    ::unlink(path_.c_str());
    acceptor_.open();
    acceptor_.bind(asio::local::stream_protocol::endpoint(path_));
    // Whoever connects gets this process's listeners: the owner only.
    if (::chmod(path_.c_str(), 0600) != 0)
        throw os_error("cannot restrict the handover socket " + path_);
    acceptor_.listen(1);
}

handover_listener::~handover_listener() = default;

void handover_listener::start() {
    accept();
}

void handover_listener::stop(bool remove_file) noexcept {
    asio::error_code ignored;
    if (remove_file && acceptor_.is_open()) ::unlink(path_.c_str());
    acceptor_.close(ignored);
    if (pending_) pending_->close(ignored);
}

void handover_listener::accept() {
    acceptor_.async_accept([this](const asio::error_code& ec, socket_type peer) {
        if (ec == asio::error::operation_aborted) return;
        if (ec) {
            spdlog::warn("handover socket {}: accept failed: {}", path_, ec.message());
            return accept();
        }
        pending_.emplace(std::move(peer));
        serve(*pending_);
    });
}

void handover_listener::serve(socket_type& peer) {
    ucred who{};
    socklen_t size = sizeof who;
    if (::getsockopt(peer.native_handle(), SOL_SOCKET, SO_PEERCRED, &who, &size) != 0 ||
        who.uid != ::geteuid()) {
        spdlog::warn("handover socket {}: refused a process of uid {}, not this one's", path_,
                     who.uid);
        pending_.reset();
        return accept();
    }
    asio::async_read(
        peer, asio::buffer(confirm_, request_line.size()),
        [this, who](const asio::error_code& ec, std::size_t) {
            if (ec || std::string_view(confirm_, request_line.size()) != request_line) {
                if (ec != asio::error::operation_aborted) {
                    spdlog::warn("handover socket {}: pid {} did not ask for the listeners", path_,
                                 who.pid);
                    pending_.reset();
                    accept();
                }
                return;
            }
            std::vector<int> fds = what_.data;
            if (what_.admin >= 0) fds.push_back(what_.admin);
            if (what_.pidfile >= 0) fds.push_back(what_.pidfile);
            const std::string header = std::string(header_prefix) +
                                       " pid=" + std::to_string(::getpid()) +
                                       " data=" + std::to_string(what_.data.size()) +
                                       " admin=" + (what_.admin >= 0 ? "1" : "0") +
                                       " pidfile=" + (what_.pidfile >= 0 ? "1" : "0") + "\n";
            iovec part{const_cast<char*>(header.data()), header.size()};
            std::vector<char> control(CMSG_SPACE(sizeof(int) * fds.size()));
            msghdr message{};
            message.msg_iov = &part;
            message.msg_iovlen = 1;
            message.msg_control = control.data();
            message.msg_controllen = control.size();
            cmsghdr* c = CMSG_FIRSTHDR(&message);
            c->cmsg_level = SOL_SOCKET;
            c->cmsg_type = SCM_RIGHTS;
            c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
            std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
            if (::sendmsg(pending_->native_handle(), &message, MSG_NOSIGNAL) !=
                static_cast<ssize_t>(header.size())) {
                spdlog::warn("handover socket {}: could not send the listeners to pid {}: {}",
                             path_, who.pid, std::strerror(errno));
                pending_.reset();
                return accept();
            }
            spdlog::info("handover: listeners sent to pid {}, waiting for it to serve", who.pid);
            asio::async_read(
                *pending_, asio::buffer(confirm_, confirm_line.size()),
                [this, who](const asio::error_code& read_ec, std::size_t) {
                    if (read_ec == asio::error::operation_aborted) return;
                    pending_.reset();
                    if (read_ec ||
                        std::string_view(confirm_, confirm_line.size()) != confirm_line) {
                        // It died or gave up before serving: this process never stopped.
                        spdlog::warn("handover: pid {} did not take over; still serving", who.pid);
                        return accept();
                    }
                    handed_over_(who.pid);
                });
        });
}

}  // namespace slabd::server
