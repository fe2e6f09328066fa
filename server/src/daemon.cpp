#include "daemon.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#ifdef SLABD_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <string>
#include <system_error>

namespace slabd::server {

namespace {

std::system_error os_error(const std::string& what) {
    return {errno, std::generic_category(), what};
}

void write_all(int fd, std::string_view data) noexcept {
    while (!data.empty()) {
        const ssize_t n = ::write(fd, data.data(), data.size());
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return;
        data.remove_prefix(static_cast<std::size_t>(n));
    }
}

std::string read_all(int fd) {
    std::string out;
    char chunk[512];
    for (;;) {
        const ssize_t n = ::read(fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return out;
        out.append(chunk, static_cast<std::size_t>(n));
    }
}

/// The launcher's side: wait for the daemon's word, then leave without running destructors (the
/// listeners, the pidfile and the log now belong to the daemon).
[[noreturn]] void wait_for_daemon(int fd) {
    const std::string word = read_all(fd);
    if (!word.empty() && word.front() == '\0') ::_exit(0);
    if (word.empty()) {
        write_all(STDERR_FILENO, "slabd: the daemon exited before it was ready (see its log)\n");
        ::_exit(1);
    }
    write_all(STDERR_FILENO, "slabd: " + word.substr(1) + "\n");
    ::_exit(static_cast<unsigned char>(word.front()));
}

void redirect_to_dev_null(int fd) {
    const int null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null < 0) throw os_error("/dev/null");
    if (::dup2(null, fd) < 0) throw os_error("dup2");
    ::close(null);
}

}  // namespace

pidfile::pidfile(std::string path) : path_(std::move(path)) {
    fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) throw os_error("cannot open pidfile " + path_);
    if (::flock(fd_, LOCK_EX | LOCK_NB) == 0) return;
    const int lock_errno = errno;
    std::string holder = read_all(fd_);
    ::close(fd_);
    if (lock_errno != EWOULDBLOCK)
        throw std::system_error(lock_errno, std::generic_category(),
                                "cannot lock pidfile " + path_);
    while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' ')) holder.pop_back();
    throw already_running("pidfile " + path_ + " is locked: slabd is already running as pid " +
                          (holder.empty() ? std::string("(not written yet)") : holder));
}

pidfile::~pidfile() {
    if (fd_ < 0) return;
    // Unlinked while still locked, so a newcomer never finds our pid in a file nobody holds.
    ::unlink(path_.c_str());
    ::close(fd_);
}

void pidfile::hand_over() noexcept {
    if (fd_ >= 0) ::close(std::exchange(fd_, -1));
}

void pidfile::write_pid() {
    const std::string text = std::to_string(::getpid()) + "\n";
    if (::ftruncate(fd_, 0) != 0) throw os_error("cannot write pidfile " + path_);
    if (::pwrite(fd_, text.data(), text.size(), 0) != static_cast<ssize_t>(text.size()))
        throw os_error("cannot write pidfile " + path_);
}

launcher_pipe::~launcher_pipe() {
    if (fd_ >= 0) ::close(fd_);
}

void launcher_pipe::ready() noexcept {
    if (fd_ < 0) return;
    write_all(fd_, std::string_view("\0", 1));
    ::close(std::exchange(fd_, -1));
}

void launcher_pipe::failed(int exit_code, std::string_view message) noexcept {
    if (fd_ < 0) return;
    write_all(fd_, std::string(1, static_cast<char>(exit_code)) + std::string(message));
    ::close(std::exchange(fd_, -1));
}

launcher_pipe daemonize(
    const std::function<void(asio::execution_context::fork_event)>& notify_fork) {
    int ends[2];
    if (::pipe2(ends, O_CLOEXEC) != 0) throw os_error("pipe");
    notify_fork(asio::execution_context::fork_prepare);
    const pid_t first = ::fork();
    if (first < 0) throw os_error("fork");
    if (first > 0) {
        ::close(ends[1]);
        wait_for_daemon(ends[0]);
    }
    ::close(ends[0]);
    // A new session has no controlling terminal; the second fork makes sure the daemon, no
    // session leader, can never acquire one by opening a tty.
    if (::setsid() < 0) throw os_error("setsid");
    const pid_t second = ::fork();
    if (second < 0) throw os_error("fork");
    if (second > 0) ::_exit(0);
    notify_fork(asio::execution_context::fork_child);
    if (::chdir("/") != 0) throw os_error("chdir /");
    ::umask(022);
    redirect_to_dev_null(STDIN_FILENO);
    redirect_to_dev_null(STDOUT_FILENO);
    return launcher_pipe(ends[1]);
}

int spawn_successor(const std::string& program, const std::vector<std::string>& args) {
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    if (const int e = ::posix_spawn_file_actions_init(&actions); e != 0)
        throw std::system_error(e, std::generic_category(), "posix_spawn_file_actions_init");
    // Asio opens its sockets without O_CLOEXEC: without this the successor would hold every
    // client's connection open after this process closed it. It takes the listeners over the
    // handover socket instead.
    if (const int e = ::posix_spawn_file_actions_addclosefrom_np(&actions, 3); e != 0) {
        ::posix_spawn_file_actions_destroy(&actions);
        throw std::system_error(e, std::generic_category(),
                                "posix_spawn_file_actions_addclosefrom_np");
    }
    // The successor is not waited for: once this process exits it is adopted like any daemon.
    ::signal(SIGCHLD, SIG_IGN);
    pid_t pid = 0;
    const bool search = program.find('/') == std::string::npos;
    const int e =
        search ? ::posix_spawnp(&pid, program.c_str(), &actions, nullptr, argv.data(), environ)
               : ::posix_spawn(&pid, program.c_str(), &actions, nullptr, argv.data(), environ);
    ::posix_spawn_file_actions_destroy(&actions);
    if (e != 0) throw std::system_error(e, std::generic_category(), "cannot start " + program);
    return static_cast<int>(pid);
}

void notify_systemd(const char* state) noexcept {
#ifdef SLABD_HAVE_SYSTEMD
    ::sd_notify(0, state);
#else
    static_cast<void>(state);
#endif
}

void raise_descriptor_limit(const config::Config& settings) noexcept {
    rlimit limit{};
    if (::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        ::setrlimit(RLIMIT_NOFILE, &limit);
    }
    warn_if_descriptors_short(settings);
}

void warn_if_descriptors_short(const config::Config& settings) noexcept {
    rlimit limit{};
    if (::getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY) return;
    const bool proxy = settings.mode == config::server_mode::proxy;
    const std::size_t pipe_fds =
        proxy ? 2 * settings.splice_pipes * std::max(1U, settings.threads) : 0;
    const std::size_t needed = settings.max_connections * (proxy ? 2 : 1) + pipe_fds + 64;
    if (needed > limit.rlim_cur)
        spdlog::warn(
            "max_connections {} needs about {} descriptors but the limit is {}: "
            "accept will fail (and back off) before the pool is full",
            settings.max_connections, needed, limit.rlim_cur);
}

}  // namespace slabd::server
