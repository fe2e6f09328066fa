#include "probe.hpp"

#include <sys/socket.h>
#include <sys/time.h>
#include <asio/connect.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/read.hpp>
#include <asio/write.hpp>

#include <charconv>

namespace slabd::server {

namespace {

constexpr timeval probe_timeout{5, 0};
// Past this much the answer is not one the admin endpoint gives.
constexpr std::size_t max_answer = 8 << 20;

}  // namespace

admin_answer admin_get(const config::Config& settings, const std::string& path) {
    admin_answer result;
    asio::io_context context;
    asio::ip::tcp::socket socket(context);
    asio::error_code ec;
    auto address = asio::ip::make_address(settings.admin.host, ec);
    if (ec) {
        result.error = "admin.listen " + config::to_string(settings.admin) + " is not an address";
        return result;
    }
    // Listening on every address means this host answers on loopback too.
    if (address.is_unspecified())
        address = address.is_v6() ? asio::ip::address(asio::ip::address_v6::loopback())
                                  : asio::ip::address(asio::ip::address_v4::loopback());
    const asio::ip::tcp::endpoint at{address, settings.admin.port};
    socket.open(at.protocol(), ec);
    if (!ec) {
        // A wedged endpoint must not hang a health check: blocking calls give up after this.
        ::setsockopt(socket.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &probe_timeout,
                     sizeof probe_timeout);
        ::setsockopt(socket.native_handle(), SOL_SOCKET, SO_SNDTIMEO, &probe_timeout,
                     sizeof probe_timeout);
        socket.connect(at, ec);
    }
    if (ec) {
        result.error = "cannot connect to the admin endpoint " + config::to_string(settings.admin) +
                       ": " + ec.message();
        return result;
    }
    std::string request = "GET " + path +
                          " HTTP/1.1\r\nHost: " + config::to_string(settings.admin) +
                          "\r\nConnection: close\r\n";
    if (!settings.admin_token.empty())
        request += "Authorization: Bearer " + settings.admin_token + "\r\n";
    request += "\r\n";
    asio::write(socket, asio::buffer(request), ec);
    std::string answer;
    while (!ec && answer.size() < max_answer) {
        char chunk[4096];
        const std::size_t n = socket.read_some(asio::buffer(chunk), ec);
        answer.append(chunk, n);
    }
    if (ec && ec != asio::error::eof) {
        result.error = path + ": " + ec.message();
        return result;
    }
    // "HTTP/1.1 200 OK\r\n...\r\n\r\nbody": Connection: close, so the body runs to the end.
    int status = 0;
    const auto space = answer.find(' ');
    if (space != std::string::npos)
        std::from_chars(answer.data() + space + 1,
                        answer.data() + std::min(answer.size(), space + 4), status);
    const auto body = answer.find("\r\n\r\n");
    if (status == 0 || body == std::string::npos) {
        result.error = path + ": not an HTTP answer";
        return result;
    }
    result.status = status;
    result.body = answer.substr(body + 4);
    return result;
}

int probe(const config::Config& settings, const std::string& path, std::ostream& out,
          std::ostream& err) {
    const auto answer = admin_get(settings, path);
    if (answer.status == 0) {
        err << "slabd: --probe: " << answer.error << "\n";
        return 1;
    }
    out << answer.body;
    if (answer.status != 200)
        err << "slabd: --probe: " << path << " answered " << answer.status << "\n";
    return answer.status == 200 ? 0 : 1;
}

}  // namespace slabd::server
