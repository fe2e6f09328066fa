// slabd-load's entry point: parse the command line, run, exit with the verdict.
#include <iostream>

#include "options.hpp"
#include "run.hpp"

int main(int argc, char** argv) {
    const auto cli = slabd::load::parse_command_line(argc, argv);
    if (!cli.opts) {
        (cli.exit_code == 0 ? std::cout : std::cerr) << cli.output;
        return cli.exit_code;
    }
    return slabd::load::run(*cli.opts);
}
