#include "logging.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>

#include <cerrno>
#include <ctime>
#include <memory>
#include <mutex>
#include <string>

namespace slabd::server::logging {

namespace {

std::error_code last_error() noexcept {
    return {errno, std::generic_category()};
}

int open_append(const std::string& path) noexcept {
    return ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
}

/// One write(2) per line on an O_APPEND descriptor: lines from several threads (and from a
/// sanitizer writing to the same file) never interleave, and nothing is lost in a buffer on a
/// crash.
class fd_sink final : public spdlog::sinks::base_sink<std::mutex> {
  public:
    fd_sink(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
    ~fd_sink() override {
        if (!path_.empty()) ::close(fd_);
    }
    fd_sink(const fd_sink&) = delete;
    fd_sink& operator=(const fd_sink&) = delete;

    std::error_code reopen() {
        if (path_.empty()) return {};
        const int fresh = open_append(path_);
        if (fresh < 0) return last_error();
        std::lock_guard lock(mutex_);
        if (stderr_captured_ && ::dup2(fresh, STDERR_FILENO) < 0) {
            const std::error_code ec = last_error();
            ::close(fresh);
            return ec;
        }
        ::close(fd_);
        fd_ = fresh;
        return {};
    }

    std::error_code capture_stderr() {
        std::lock_guard lock(mutex_);
        const int target = path_.empty() ? ::open("/dev/null", O_WRONLY | O_CLOEXEC) : fd_;
        if (target < 0) return last_error();
        const bool ok = ::dup2(target, STDERR_FILENO) >= 0;
        const std::error_code ec = ok ? std::error_code{} : last_error();
        if (path_.empty()) {
            ::close(target);
            // Our own descriptor is the one just replaced: keep logging into the void with it.
            fd_ = STDERR_FILENO;
        }
        stderr_captured_ = ok && !path_.empty();
        return ec;
    }

  protected:
    void sink_it_(const spdlog::details::log_msg& msg) override {
        spdlog::memory_buf_t line;
        formatter_->format(msg, line);
        write_all({line.data(), line.size()});
    }
    void flush_() override {}

  public:
    /// A line formatted already, written as sink_it_ writes, under the sink's lock.
    void write_formatted(std::string_view line) {
        std::lock_guard lock(mutex_);
        write_all(line);
    }

  private:
    void write_all(std::string_view line) noexcept {
        const char* at = line.data();
        std::size_t left = line.size();
        while (left > 0) {
            const ssize_t n = ::write(fd_, at, left);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) return;  // a full disk must not stop the server; nowhere to report it
            at += n;
            left -= static_cast<std::size_t>(n);
        }
    }

  private:
    int fd_;
    std::string path_;  // "" for stderr, which is not ours to close or reopen
    bool stderr_captured_ = false;
};

void append_json_string(std::string_view text, spdlog::memory_buf_t& out) {
    static constexpr char hex[] = "0123456789abcdef";
    out.push_back('"');
    for (const char ch : text) {
        const auto c = static_cast<unsigned char>(ch);
        switch (c) {
            case '"':
                out.append(std::string_view("\\\""));
                break;
            case '\\':
                out.append(std::string_view("\\\\"));
                break;
            case '\n':
                out.append(std::string_view("\\n"));
                break;
            case '\r':
                out.append(std::string_view("\\r"));
                break;
            case '\t':
                out.append(std::string_view("\\t"));
                break;
            default:
                if (c < 0x20 || c == 0x7f) {
                    const char escaped[] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
                    out.append(escaped, escaped + sizeof escaped);
                } else {
                    out.push_back(ch);
                }
        }
    }
    out.push_back('"');
}

/// {"time":"2026-01-02T03:04:05.678Z","level":"info","message":"..."}: one object per line for
/// log collectors, the message escaped whatever it holds.
/// The object's members every line has, left open for more.
void json_head(spdlog::log_clock::time_point time, spdlog::level::level_enum level,
               std::string_view message, spdlog::memory_buf_t& out) {
    using namespace std::chrono;
    const auto since_epoch = time.time_since_epoch();
    const std::time_t seconds = duration_cast<std::chrono::seconds>(since_epoch).count();
    const auto millis = duration_cast<milliseconds>(since_epoch).count() % 1000;
    std::tm utc{};
    ::gmtime_r(&seconds, &utc);
    fmt::format_to(std::back_inserter(out),
                   R"({{"time":"{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z","level":")",
                   utc.tm_year + 1900, utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min,
                   utc.tm_sec, millis);
    const auto name = spdlog::level::to_string_view(level);
    out.append(name.data(), name.data() + name.size());
    out.append(std::string_view(R"(","message":)"));
    append_json_string(message, out);
}

class json_formatter final : public spdlog::formatter {
  public:
    void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& out) override {
        json_head(msg.time, msg.level, {msg.payload.data(), msg.payload.size()}, out);
        out.append(std::string_view("}\n"));
    }
    [[nodiscard]] std::unique_ptr<spdlog::formatter> clone() const override {
        return std::make_unique<json_formatter>();
    }
};

// The sink outlives every SIGHUP; spdlog's default logger holds it too.
std::shared_ptr<fd_sink> sink;
bool json = false;

/// logfmt's rule: a value with a space, a quote or an equals sign, or none, is quoted.
void append_text_value(std::string_view value, spdlog::memory_buf_t& out) {
    if (!value.empty() && value.find_first_of(" \"=\\") == std::string_view::npos) {
        out.append(value);
        return;
    }
    out.push_back('"');
    for (const char c : value) {
        if (c == '"' || c == '\\') out.push_back('\\');
        out.push_back(c);
    }
    out.push_back('"');
}

}  // namespace

void setup(const config::Config& settings) {
    int fd = STDERR_FILENO;
    if (!settings.log_file.empty()) {
        fd = open_append(settings.log_file);
        if (fd < 0)
            throw std::system_error(last_error(), "cannot open log file " + settings.log_file);
    }
    sink = std::make_shared<fd_sink>(fd, settings.log_file);
    json = settings.log_fmt == config::log_format::json;
    if (json)
        sink->set_formatter(std::make_unique<json_formatter>());
    else
        sink->set_formatter(std::make_unique<spdlog::pattern_formatter>());
    spdlog::set_default_logger(std::make_shared<spdlog::logger>("", sink));
    spdlog::set_level(spdlog::level::from_str(settings.log_level));
}

void write_fields(std::chrono::system_clock::time_point time, std::string_view message,
                  std::span<const field> fields) {
    if (!sink) return;
    spdlog::memory_buf_t line;
    if (json) {
        json_head(time, spdlog::level::info, message, line);
        for (const auto& f : fields) {
            line.push_back(',');
            append_json_string(f.key, line);
            line.push_back(':');
            if (f.text)
                append_json_string(f.value, line);
            else
                line.append(f.value);
        }
        line.append(std::string_view("}\n"));
        sink->write_formatted({line.data(), line.size()});
        return;
    }
    line.append(message);
    for (const auto& f : fields) {
        line.push_back(' ');
        line.append(f.key);
        line.push_back('=');
        append_text_value(f.value, line);
    }
    // Through the sink's own formatter: the same time and level prefix as every other line.
    sink->log(
        spdlog::details::log_msg(time, {}, "", spdlog::level::info, {line.data(), line.size()}));
}

std::error_code reopen() {
    return sink ? sink->reopen() : std::error_code{};
}

std::error_code capture_stderr() {
    return sink ? sink->capture_stderr() : std::error_code{};
}

}  // namespace slabd::server::logging
