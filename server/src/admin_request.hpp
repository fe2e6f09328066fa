// Assembles admin HTTP requests from the byte chunks a socket happens to deliver: no I/O, so the
// socket loop around it is small, and it is tested (and fuzzed) at every fragmentation of its
// input. One request at a time: bytes of a pipelined request that follows stay in the caller's
// input.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

struct http_parser;

namespace slabd::server {

/// The parts of a request the routes look at.
struct admin_request {
    std::string_view method;
    std::string_view target;
    std::string_view authorization;  // the Authorization header's value, or empty
    bool keep_alive = false;         // the client wants the connection kept after the answer
    bool head = false;               // HEAD: the answer carries headers only
};

/// Limits of the admin listener.
struct admin_limits {
    static constexpr std::size_t max_sessions = 64;  // its own pool, apart from the data pool
    static constexpr std::size_t max_request_bytes = 8192;  // request line and headers; 431 beyond
    static constexpr int header_timeout_seconds = 10;       // a slow client is cut off (408)
    static constexpr int write_timeout_seconds = 10;  // a client that does not read is dropped
};

/// Feeds on byte chunks; says need-more, a complete request, or the error status to answer.
class request_assembler {
  public:
    enum class outcome {
        need_more,  ///< every byte offered is used and the request is not complete yet
        complete,   ///< request() holds a whole request; the input starts after it
        error,      ///< error_status() says why (400 or 431); no further request on this stream
    };

    request_assembler();
    ~request_assembler();
    request_assembler(const request_assembler&) = delete;
    request_assembler& operator=(const request_assembler&) = delete;

    /// Consumes bytes from the front of `input` up to the end of one request and advances it past
    /// what it used. After `complete`, the next call starts the next request; `error` is final.
    outcome feed(std::string_view& input);
    /// The request just completed; its views stay valid until the next feed().
    [[nodiscard]] const admin_request& request() const noexcept { return request_; }
    /// 400 (malformed) or 431 (over admin_limits::max_request_bytes) after `error`; 0 before.
    [[nodiscard]] int error_status() const noexcept { return error_status_; }
    /// Bytes taken by the request under way: 0 between requests, so an idle keep-alive can be
    /// told apart from a half-sent request when the header timeout strikes.
    [[nodiscard]] std::size_t pending_bytes() const noexcept { return started_ ? consumed_ : 0; }

    // The parser's callbacks, public so that its plain C callbacks can reach them.
    void on_url(std::string_view piece) { url_.append(piece); }
    void on_header_field(std::string_view piece);
    void on_header_value(std::string_view piece);
    void on_headers_complete() { end_header(); }
    void on_message_complete() { message_complete_ = true; }

  private:
    void start_request();
    void end_header();

    http_parser* parser_;  // owned; held by pointer so the header does not need http_parser.h
    std::size_t consumed_ = 0;
    int error_status_ = 0;
    bool started_ = false;
    bool message_complete_ = false;
    bool in_value_ = false;
    std::string url_;
    std::string field_;
    std::string value_;
    std::string authorization_;
    admin_request request_;
};

}  // namespace slabd::server
