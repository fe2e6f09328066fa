# Compiler options every slabd target links: warnings, and the sanitizer chosen for this build.
# They are INTERFACE targets so that a target opts in by linking, as cmake_template does.

option(SLABD_WARNINGS_AS_ERRORS "Treat compiler warnings as errors" OFF)
set(SLABD_SANITIZE "" CACHE STRING "Sanitizers for this build: empty, 'address;undefined' or 'thread'")

add_library(slabd_options INTERFACE)
add_library(slabd::options ALIAS slabd_options)

target_compile_options(slabd_options INTERFACE
  -Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wsign-conversion -Wnon-virtual-dtor
  -Wold-style-cast -Woverloaded-virtual -Wnull-dereference -Wimplicit-fallthrough
  $<$<BOOL:${SLABD_WARNINGS_AS_ERRORS}>:-Werror>)

if(SLABD_SANITIZE)
  list(JOIN SLABD_SANITIZE "," _slabd_sanitizers)
  set(_slabd_sanitizer_flags -fsanitize=${_slabd_sanitizers} -fno-omit-frame-pointer)
  if("undefined" IN_LIST SLABD_SANITIZE)
    # A UBSan finding fails the test instead of scrolling past.
    list(APPEND _slabd_sanitizer_flags -fno-sanitize-recover=all)
  endif()
  target_compile_options(slabd_options INTERFACE ${_slabd_sanitizer_flags})
  target_link_options(slabd_options INTERFACE ${_slabd_sanitizer_flags})
  target_compile_definitions(slabd_options INTERFACE SLABD_SANITIZED=1)
endif()
