// Pipes for zero-copy relaying: splice(2) moves bytes socket -> pipe -> socket inside the kernel,
// so a bulk transfer through the proxy is never copied into user space. Each shard owns a fixed
// set, made at start-up, and lends one to a relay only while the relay has bytes in it, exactly as
// it lends buffers; none left means the relay copies through a buffer instead.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace slabd::server {

class pipe_pool {
  public:
    /// Makes `count` non-blocking pipes. Throws std::system_error (start-up only).
    explicit pipe_pool(std::size_t count);
    ~pipe_pool();
    pipe_pool(const pipe_pool&) = delete;
    pipe_pool& operator=(const pipe_pool&) = delete;

    static constexpr std::int32_t none = -1;

    /// A free pipe's index, or `none`.
    [[nodiscard]] std::int32_t take() noexcept {
        if (free_.empty()) return none;
        const std::int32_t index = free_.back();
        free_.pop_back();
        return index;
    }
    /// Returns a pipe. `holds_bytes`: its reader stopped before draining it (the connection was
    /// closed mid-transfer), so the pipe is replaced rather than have a later relay send them.
    /// False when no replacement could be made (descriptor limit): the pool is one pipe smaller.
    [[nodiscard]] bool give_back(std::int32_t index, bool holds_bytes) noexcept {
        if (holds_bytes && !replace(index)) [[unlikely]]
            return false;
        free_.push_back(index);
        return true;
    }

    [[nodiscard]] bool enabled() const noexcept { return !fds_.empty(); }
    [[nodiscard]] int read_end(std::int32_t index) const noexcept {
        return fds_[std::size_t(index)].read;
    }
    [[nodiscard]] int write_end(std::int32_t index) const noexcept {
        return fds_[std::size_t(index)].write;
    }
    /// The pipe's size in bytes: the most one splice into it can move. Pipes differ: once a user
    /// owns many pipe pages, the kernel makes new pipes smaller.
    [[nodiscard]] std::size_t size(std::int32_t index) const noexcept {
        return fds_[std::size_t(index)].size;
    }
    /// The smallest pipe's size, 0 for an empty pool.
    [[nodiscard]] std::size_t smallest() const noexcept;

  private:
    struct ends {
        int read = -1;
        int write = -1;
        std::size_t size = 0;
    };
    static bool make(ends& e) noexcept;
    static void close(ends& e) noexcept;
    bool replace(std::int32_t index) noexcept;

    std::vector<ends> fds_;
    std::vector<std::int32_t> free_;  // reserved to fds_.size(): push_back never allocates
};

}  // namespace slabd::server
