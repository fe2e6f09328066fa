// Running as a service: the locked pidfile, detaching from the terminal (--daemonize), and the
// systemd readiness protocol (Type=notify), a no-op in builds without libsystemd.
#pragma once

#include <asio/execution_context.hpp>

#include <functional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "slabd/config/config.hpp"

namespace slabd::server {

/// Another process holds the pidfile's lock; what() names the file and that process.
class already_running : public std::runtime_error {
  public:
    using runtime_error::runtime_error;
};

/// A pidfile under flock(2) for as long as this object lives; removed by the destructor. flock,
/// not fcntl: the lock belongs to the open file, so it survives the forks of daemonize().
class pidfile {
  public:
    /// Creates and locks `path`; throws already_running, or std::system_error on other failures.
    explicit pidfile(std::string path);
    ~pidfile();
    pidfile(const pidfile&) = delete;
    pidfile& operator=(const pidfile&) = delete;

    /// Adopts `locked_fd`, the open and locked pidfile a process taking over was given: the
    /// lock belongs to the open file, so it passes with the descriptor.
    pidfile(std::string path, int locked_fd) noexcept : path_(std::move(path)), fd_(locked_fd) {}
    /// Writes this process's id, once it is final (after daemonize); throws std::system_error.
    void write_pid();
    /// The descriptor, to hand to a process that takes over.
    [[nodiscard]] int descriptor() const noexcept { return fd_; }
    /// The process that took over holds the lock now and wrote its pid: close without removing.
    void hand_over() noexcept;

  private:
    std::string path_;
    int fd_;
};

/// The daemon's end of the pipe on which the launcher waits: the launcher exits 0 on ready(),
/// or prints the message and exits with the code given to failed().
class launcher_pipe {
  public:
    explicit launcher_pipe(int fd) noexcept : fd_(fd) {}
    ~launcher_pipe();
    launcher_pipe(launcher_pipe&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
    launcher_pipe& operator=(launcher_pipe&&) = delete;

    void ready() noexcept;
    void failed(int exit_code, std::string_view message) noexcept;

  private:
    int fd_;
};

/// Detaches (fork, setsid, fork, chdir /, umask 022, stdin and stdout to /dev/null) and returns in
/// the daemon only; the launcher stays in the foreground until the daemon reports through the
/// pipe. `notify_fork` lets the io_contexts rebuild their epoll state in the daemon. Throws
/// std::system_error when a fork or the pipe fails.
launcher_pipe daemonize(
    const std::function<void(asio::execution_context::fork_event)>& notify_fork);

/// Raises the soft descriptor limit to the hard one, then warns_if_descriptors_short().
void raise_descriptor_limit(const config::Config& settings) noexcept;
/// Warns when max_connections (and the splice pipes) need more descriptors than the limit gives:
/// accept would then fail, and back off, before the pool is full.
void warn_if_descriptors_short(const config::Config& settings) noexcept;

/// Tells systemd about a state change ("READY=1", "STOPPING=1", ...); nothing outside systemd.
void notify_systemd(const char* state) noexcept;

/// Starts `program` (a path, or a name looked up in PATH) with `args` (argv[0] first) as a new
/// process that inherits standard input, output and error and no other descriptor, and returns
/// its pid; the caller does not wait for it. Throws std::system_error.
int spawn_successor(const std::string& program, const std::vector<std::string>& args);

}  // namespace slabd::server
