#include "options.hpp"

#include <doctest/doctest.h>

#include <initializer_list>
#include <string>
#include <vector>

using namespace slabd::load;

namespace {

command_line parse(std::initializer_list<const char*> args) {
    std::vector<const char*> argv{"slabd-load"};
    argv.insert(argv.end(), args);
    return parse_command_line(static_cast<int>(argv.size()), argv.data());
}

}  // namespace

TEST_CASE("a full rr command line") {
    const auto cli = parse({"rr",
                            "--target",
                            "127.0.0.1:7000",
                            "-c",
                            "100",
                            "-s",
                            "256",
                            "-d",
                            "2.5",
                            "--threads",
                            "2",
                            "--json",
                            "out.json",
                            "--hgrm",
                            "out.hgrm",
                            "--warmup",
                            "1",
                            "--timeout",
                            "0.5",
                            "--max-errors",
                            "3",
                            "--connect-rate",
                            "1000"});
    REQUIRE(cli.opts);
    const options& o = *cli.opts;
    CHECK(o.run_mode == mode::rr);
    CHECK(o.target_host == "127.0.0.1");
    CHECK(o.target_port == 7000);
    CHECK(o.connections == 100);
    CHECK(o.size == 256);
    CHECK(o.duration_s == 2.5);
    CHECK(o.threads == 2);
    CHECK(o.json_path == "out.json");
    CHECK(o.hgrm_path == "out.hgrm");
    CHECK(o.warmup_s == 1);
    CHECK(o.timeout_s == 0.5);
    CHECK(o.max_errors == 3);
    CHECK(o.connect_rate == 1000);
    CHECK(o.messages == 0);
}

TEST_CASE("defaults, and each mode by name") {
    const auto cli = parse({"hold", "--target", "localhost:1"});
    REQUIRE(cli.opts);
    CHECK(cli.opts->run_mode == mode::hold);
    CHECK(cli.opts->connections == 1);
    CHECK(cli.opts->size == 64);
    CHECK(cli.opts->duration_s == 10);
    CHECK(cli.opts->timeout_s == 5);
    CHECK(cli.opts->max_errors == 0);
    CHECK(parse({"churn", "--target", "h:1"}).opts->run_mode == mode::churn);
    CHECK(parse({"bulk", "--target", "h:1", "--direction", "up"}).opts->bulk_direction ==
          direction::up);
    CHECK(parse({"rate", "--target", "h:1", "--rate", "5"}).opts->rate == 5);
    CHECK(parse({"churn", "--target", "h:1", "--rate", "2000"}).opts->rate == 2000);
}

TEST_CASE("targets: IPv4, IPv6 in brackets, names; sources as a comma list") {
    const auto v6 = parse({"rr", "--target", "[::1]:8080", "--source", "::1"});
    REQUIRE(v6.opts);
    CHECK(v6.opts->target_host == "::1");
    CHECK(v6.opts->target_port == 8080);
    CHECK(v6.opts->target() == "[::1]:8080");
    const auto sources =
        parse({"hold", "--target", "127.0.0.1:1", "--source", "127.0.0.1,127.0.0.2,127.0.0.3"});
    REQUIRE(sources.opts);
    REQUIRE(sources.opts->sources.size() == 3);
    CHECK(sources.opts->sources[2].to_string() == "127.0.0.3");
}

TEST_CASE("never more threads than connections") {
    const auto cli = parse({"rr", "--target", "h:1", "-c", "3", "--threads", "8"});
    REQUIRE(cli.opts);
    CHECK(cli.opts->threads == 3);
}

TEST_CASE("--messages counts instead of -d") {
    const auto cli = parse({"rr", "--target", "h:1", "--messages", "1000"});
    REQUIRE(cli.opts);
    CHECK(cli.opts->messages == 1000);
}

TEST_CASE("bad usage exits 2 with a message on stderr") {
    for (const auto& args : std::vector<std::vector<const char*>>{
             {},
             {"rr"},
             {"walk", "--target", "h:1"},
             {"rr", "--target", "h"},
             {"rr", "--target", "h:0"},
             {"rr", "--target", "h:70000"},
             {"rr", "--target", "h:80x"},
             {"rr", "--target", "[::1:80"},
             {"rr", "--target", "h:1", "-c", "0"},
             {"rr", "--target", "h:1", "-s", "0"},
             {"rr", "--target", "h:1", "-d", "0"},
             {"rr", "--target", "h:1", "--timeout", "-1"},
             {"rr", "--target", "h:1", "--source", "not-an-address"},
             {"rr", "--target", "h:1", "--rate", "100"},
             {"hold", "--target", "h:1", "--rate", "100"},
             {"churn", "--target", "h:1", "--rate", "0"},
             {"churn", "--target", "h:1", "--rate", "10", "--connect-rate", "5"},
             {"rate", "--target", "h:1"},
             {"rr", "--target", "h:1", "--direction", "up"},
             {"bulk", "--target", "h:1", "--direction", "sideways"},
             {"rr", "--target", "h:1", "--messages", "10", "-d", "3"},
             {"hold", "--target", "h:1", "--messages", "10"},
             {"hold", "--target", "h:1", "--warmup", "1"},
             {"rr", "--target", "h:1", "--max-errors", "-1"},
             {"rr", "--target", "h:1", "--bogus"},
         }) {
        std::vector<const char*> argv{"slabd-load"};
        argv.insert(argv.end(), args.begin(), args.end());
        const auto cli = parse_command_line(static_cast<int>(argv.size()), argv.data());
        std::string joined;
        for (const char* a : args) joined += std::string(a) + " ";
        INFO("args: " << joined);
        CHECK_FALSE(cli.opts);
        CHECK(cli.exit_code == 2);
        CHECK_FALSE(cli.output.empty());
    }
}

TEST_CASE("--help and --version exit 0 with their text") {
    const auto help = parse({"--help"});
    CHECK_FALSE(help.opts);
    CHECK(help.exit_code == 0);
    CHECK(help.output.find("Usage: slabd-load") != std::string::npos);
    CHECK(help.output.find("--connect-rate") != std::string::npos);
    const auto version = parse({"--version"});
    CHECK(version.exit_code == 0);
    CHECK(version.output.find("slabd-load " SLABD_LOAD_VERSION) != std::string::npos);
}
