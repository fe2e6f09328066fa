# Compiler options every slabd target links, as INTERFACE targets so that a target opts in by
# linking (as cmake_template does): slabd::warnings, and slabd::sanitizers, the sanitizer chosen for
# this build (or the fuzzing instrumentation), which is empty in a plain build.

option(SLABD_WARNINGS_AS_ERRORS "Treat compiler warnings as errors" OFF)
set(SLABD_SANITIZE "" CACHE STRING "Sanitizers for this build: empty, 'address;undefined' or 'thread'")

add_library(slabd_warnings INTERFACE)
add_library(slabd::warnings ALIAS slabd_warnings)
add_library(slabd_sanitizers INTERFACE)
add_library(slabd::sanitizers ALIAS slabd_sanitizers)

target_compile_options(slabd_warnings INTERFACE
  # Not -Wnull-dereference: at -O2 GCC 12 reports it inside inlined Asio and libstdc++ code
  # (asio/detail/impl/scheduler.ipp, basic_string.h), where we cannot act on it.
  -Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wsign-conversion -Wnon-virtual-dtor
  -Wold-style-cast -Woverloaded-virtual -Wimplicit-fallthrough
  $<$<BOOL:${SLABD_WARNINGS_AS_ERRORS}>:-Werror>)

if(SLABD_SANITIZE)
  list(JOIN SLABD_SANITIZE "," _slabd_sanitizers)
  set(_slabd_sanitizer_flags -fsanitize=${_slabd_sanitizers} -fno-omit-frame-pointer)
  if("undefined" IN_LIST SLABD_SANITIZE)
    # A UBSan finding fails the test instead of scrolling past. The vptr check is left out: its
    # runtime validates a vtable by writing it to a pipe(), so in a process at its descriptor
    # limit (the EMFILE integration test) every virtual call it has not cached yet is reported
    # as an "invalid vptr".
    list(APPEND _slabd_sanitizer_flags -fno-sanitize-recover=all -fno-sanitize=vptr)
  endif()
  if("thread" IN_LIST SLABD_SANITIZE)
    # Under TSan GCC 12 warns about the fences of asio/detail/std_fenced_block.hpp, which TSan
    # cannot model: Asio's code, not ours.
    list(APPEND _slabd_sanitizer_flags -Wno-tsan)
  endif()
  target_compile_options(slabd_sanitizers INTERFACE ${_slabd_sanitizer_flags})
  target_link_options(slabd_sanitizers INTERFACE ${_slabd_sanitizer_flags})
  target_compile_definitions(slabd_sanitizers INTERFACE SLABD_SANITIZED=1)
endif()

# libFuzzer builds (the fuzz preset, scripts/fuzz.sh): clang only. Every slabd target gets the
# coverage instrumentation and ASan+UBSan; fuzz targets add -fsanitize=fuzzer for libFuzzer's
# main (tests/fuzz/CMakeLists.txt). -fno-sanitize=function: clang 14 cannot link UBSan's function
# check in coroutine code. The vptr check is left out as above.
option(SLABD_FUZZ "Build the fuzz targets as libFuzzer binaries (clang)" OFF)
if(SLABD_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "SLABD_FUZZ needs clang (libFuzzer); CMAKE_CXX_COMPILER is ${CMAKE_CXX_COMPILER_ID}")
  endif()
  if(SLABD_SANITIZE)
    message(FATAL_ERROR "SLABD_FUZZ brings its own sanitizers; leave SLABD_SANITIZE empty")
  endif()
  set(_slabd_fuzz_flags -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize=function,vptr
      -fno-sanitize-recover=all -fno-omit-frame-pointer)
  target_compile_options(slabd_sanitizers INTERFACE ${_slabd_fuzz_flags})
  target_link_options(slabd_sanitizers INTERFACE ${_slabd_fuzz_flags})
  target_compile_definitions(slabd_sanitizers INTERFACE SLABD_SANITIZED=1 SLABD_FUZZING=1)
endif()
