#include "admin_request.hpp"

#include <http_parser.h>

#include <algorithm>
#include <cctype>

namespace slabd::server {

namespace {

request_assembler& of(http_parser* p) {
    return *static_cast<request_assembler*>(p->data);
}

const http_parser_settings& parser_settings() {
    static const http_parser_settings settings = [] {
        http_parser_settings s{};
        s.on_url = [](http_parser* p, const char* at, std::size_t n) {
            of(p).on_url({at, n});
            return 0;
        };
        s.on_header_field = [](http_parser* p, const char* at, std::size_t n) {
            of(p).on_header_field({at, n});
            return 0;
        };
        s.on_header_value = [](http_parser* p, const char* at, std::size_t n) {
            of(p).on_header_value({at, n});
            return 0;
        };
        s.on_headers_complete = [](http_parser* p) {
            of(p).on_headers_complete();
            return 0;
        };
        s.on_message_complete = [](http_parser* p) {
            of(p).on_message_complete();
            http_parser_pause(p, 1);  // one request at a time: pipelined bytes wait their turn
            return 0;
        };
        return s;
    }();
    return settings;
}

bool is_authorization(std::string_view name) noexcept {
    constexpr std::string_view wanted = "authorization";  // header names are case-insensitive
    return std::equal(name.begin(), name.end(), wanted.begin(), wanted.end(), [](char a, char b) {
        return std::tolower(static_cast<unsigned char>(a)) == b;
    });
}

}  // namespace

request_assembler::request_assembler() : parser_(new http_parser{}) {}

request_assembler::~request_assembler() {
    delete parser_;
}

void request_assembler::start_request() {
    // A fresh parser per request: each keeps its own keep-alive and method, and a pause left by
    // the previous request's completion does not carry over.
    http_parser_init(parser_, HTTP_REQUEST);
    parser_->data = this;
    consumed_ = 0;
    message_complete_ = false;
    in_value_ = false;
    url_.clear();
    field_.clear();
    value_.clear();
    authorization_.clear();
    request_ = {};
    started_ = true;
}

void request_assembler::on_header_field(std::string_view piece) {
    if (in_value_) end_header();
    field_.append(piece);
}

void request_assembler::on_header_value(std::string_view piece) {
    in_value_ = true;
    value_.append(piece);
}

void request_assembler::end_header() {
    if (in_value_ && is_authorization(field_)) authorization_ = value_;
    field_.clear();
    value_.clear();
    in_value_ = false;
}

request_assembler::outcome request_assembler::feed(std::string_view& input) {
    if (error_status_ != 0) return outcome::error;
    if (input.empty()) return outcome::need_more;  // http-parser would take a length of 0 as EOF
    if (!started_) start_request();
    // The parser never sees more than one byte past the limit, so the outcome is the same however
    // the bytes were split: a request that ends past the limit is as oversized as one still
    // arriving, and an error after the limit's byte cannot turn a 431 into a 400.
    const std::size_t budget = admin_limits::max_request_bytes + 1 - consumed_;
    const std::size_t offered = std::min(input.size(), budget);
    const std::size_t used =
        http_parser_execute(parser_, &parser_settings(), input.data(), offered);
    consumed_ += used;
    input.remove_prefix(used);
    if (consumed_ > admin_limits::max_request_bytes) {
        error_status_ = 431;
        return outcome::error;
    }
    const auto err = HTTP_PARSER_ERRNO(parser_);
    if (err != HPE_OK && err != HPE_PAUSED) {
        error_status_ = err == HPE_HEADER_OVERFLOW ? 431 : 400;
        return outcome::error;
    }
    if (!message_complete_) return outcome::need_more;
    const auto method = static_cast<http_method>(parser_->method);
    request_.method = http_method_str(method);
    request_.target = url_;
    request_.authorization = authorization_;
    request_.keep_alive = http_should_keep_alive(parser_) != 0;
    request_.head = method == HTTP_HEAD;
    started_ = false;  // the views stay valid until the next feed() starts the next request
    return outcome::complete;
}

}  // namespace slabd::server
