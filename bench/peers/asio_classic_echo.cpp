// The classic Asio echo server, as its examples teach it: a shared_ptr session per connection
// with a 1 KiB buffer inside, async_read_some / async_write, one io_context on one thread.
// What a user would write before reaching for slabd. Usage: asio_classic_echo PORT [BIND_ADDR]
#include <asio.hpp>

#include <array>
#include <cstdlib>
#include <iostream>
#include <memory>

namespace {

class session : public std::enable_shared_from_this<session> {
  public:
    explicit session(asio::ip::tcp::socket socket) : socket_(std::move(socket)) {}
    void start() { read(); }

  private:
    void read() {
        auto self = shared_from_this();
        socket_.async_read_some(asio::buffer(data_),
                                [this, self](std::error_code ec, std::size_t n) {
                                    if (!ec) write(n);
                                });
    }
    void write(std::size_t n) {
        auto self = shared_from_this();
        asio::async_write(socket_, asio::buffer(data_, n),
                          [this, self](std::error_code ec, std::size_t) {
                              if (!ec) read();
                          });
    }
    asio::ip::tcp::socket socket_;
    std::array<char, 1024> data_{};
};

void accept(asio::ip::tcp::acceptor& acceptor) {
    acceptor.async_accept([&acceptor](std::error_code ec, asio::ip::tcp::socket socket) {
        if (!ec) {
            socket.set_option(asio::ip::tcp::no_delay(true));
            std::make_shared<session>(std::move(socket))->start();
        }
        accept(acceptor);
    });
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        std::cerr << "usage: " << argv[0] << " PORT [BIND_ADDR]\n";
        return 2;
    }
    asio::io_context context(1);
    const auto port = static_cast<unsigned short>(std::atoi(argv[1]));
    asio::ip::tcp::acceptor acceptor(
        context, {asio::ip::make_address(argc > 2 ? argv[2] : "127.0.0.1"), port});
    asio::signal_set signals(context, SIGINT, SIGTERM);
    signals.async_wait([&](std::error_code, int) { context.stop(); });
    accept(acceptor);
    context.run();
}
