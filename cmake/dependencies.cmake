# Third-party libraries, all from Debian 12 packages (scripts/install-deps.sh installs them).
# Each is found through the package's own CMake config where it ships one.

find_package(Threads REQUIRED)
find_package(fmt REQUIRED)
find_package(spdlog REQUIRED)
find_package(CLI11 REQUIRED)
find_package(tomlplusplus REQUIRED)
find_package(nlohmann_json REQUIRED)

# Standalone Asio is header-only and ships no CMake config.
find_path(ASIO_INCLUDE_DIR asio.hpp REQUIRED)
add_library(asio INTERFACE)
add_library(asio::asio ALIAS asio)
target_include_directories(asio SYSTEM INTERFACE "${ASIO_INCLUDE_DIR}")
target_compile_definitions(asio INTERFACE ASIO_STANDALONE ASIO_NO_DEPRECATED
  # Asio 1.22 does not detect clang 14's coroutine support with libstdc++.
  $<$<CXX_COMPILER_ID:Clang>:ASIO_HAS_CO_AWAIT=1>)
target_link_libraries(asio INTERFACE Threads::Threads)

# Node's http-parser ships neither a CMake config nor a pkg-config file.
find_path(HTTP_PARSER_INCLUDE_DIR http_parser.h REQUIRED)
find_library(HTTP_PARSER_LIBRARY http_parser REQUIRED)
add_library(http_parser INTERFACE)
add_library(http_parser::http_parser ALIAS http_parser)
target_include_directories(http_parser SYSTEM INTERFACE "${HTTP_PARSER_INCLUDE_DIR}")
target_link_libraries(http_parser INTERFACE "${HTTP_PARSER_LIBRARY}")

# systemd readiness notification is optional: a build without libsystemd still works.
find_package(PkgConfig)
if(PkgConfig_FOUND)
  pkg_check_modules(SYSTEMD IMPORTED_TARGET libsystemd)
endif()

if(SLABD_BUILD_TESTS)
  find_package(doctest REQUIRED)
  include(doctest)
endif()
