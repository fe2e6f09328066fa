// Fuzzes the config loader: the bytes are a TOML file, parsed and validated exactly as
// load_file does it after reading (load_string is that path without the I/O). A refusal
// (config_error) is the expected outcome for most inputs; anything else escaping is a bug.
#include "slabd/config/config.hpp"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    slabd::config::Config config;
    try {
        config = slabd::config::load_string(text, "fuzz.toml");
    } catch (const slabd::config::config_error&) {
        return 0;  // refused with a message: the loader's job
    }
    // What loaded must print (as --check-config does) as TOML that loads back to the same
    // settings; a config_error here escapes, and libFuzzer reports it as a crash.
    const std::string printed = slabd::config::to_toml(config, false);
    if (slabd::config::load_string(printed, "printed.toml") != config) __builtin_trap();
    return 0;
}
