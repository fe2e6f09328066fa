# What `cmake --install` puts where a distribution expects it (GNUInstallDirs), and the Debian
# package CPack builds from the same rules (scripts/package.sh). The binaries install themselves
# (server/, loadtest/); this adds the sample configuration, the systemd unit, logrotate's file and
# the man pages.
#
# Every destination is relative to the prefix, so `cmake --install --prefix DIR` moves all of it;
# the package preset sets CMAKE_INSTALL_SYSCONFDIR=/etc, as debhelper does. Paths written inside
# the installed files (the unit's ExecStart, the man page's FILES) are the configure-time ones:
# configure with the prefix you install to.

set(SLABD_SYSTEMD_UNIT_DIR "lib/systemd/system" CACHE PATH
    "Where the systemd unit goes, under the prefix (systemd reads /usr/local/lib/systemd/system too)")
cmake_path(ABSOLUTE_PATH SLABD_SYSTEMD_UNIT_DIR BASE_DIRECTORY "${CMAKE_INSTALL_PREFIX}"
           OUTPUT_VARIABLE SLABD_SYSTEMD_UNIT_FULL_DIR)

install(FILES "${PROJECT_SOURCE_DIR}/deploy/slabd.toml" DESTINATION "${CMAKE_INSTALL_SYSCONFDIR}/slabd")
install(FILES "${PROJECT_SOURCE_DIR}/deploy/logrotate.d/slabd"
        DESTINATION "${CMAKE_INSTALL_SYSCONFDIR}/logrotate.d")
configure_file("${PROJECT_SOURCE_DIR}/deploy/slabd.service.in" slabd.service @ONLY)
install(FILES "${CMAKE_CURRENT_BINARY_DIR}/slabd.service" DESTINATION "${SLABD_SYSTEMD_UNIT_DIR}")

# Man pages from each program's own --help and --version, so that they cannot drift from the
# flags; packaging/*.h2m add what --help does not say (signals, exit status, files).
set(SLABD_MAN_PAGES AUTO CACHE STRING "Build and install man pages with help2man: ON, OFF or AUTO (when found)")
find_program(SLABD_HELP2MAN help2man)
if(SLABD_MAN_PAGES STREQUAL "ON" AND NOT SLABD_HELP2MAN)
  message(FATAL_ERROR "SLABD_MAN_PAGES is ON but help2man is missing: scripts/install-deps.sh package")
endif()
if(SLABD_HELP2MAN AND NOT SLABD_MAN_PAGES STREQUAL "OFF")
  configure_file("${PROJECT_SOURCE_DIR}/packaging/slabd.h2m.in" slabd.h2m @ONLY)
  configure_file("${PROJECT_SOURCE_DIR}/packaging/slabd-load.h2m" slabd-load.h2m COPYONLY)
  set(_slabd_man_summary_slabd "TCP echo and proxy daemon on a slab connection pool")
  set(_slabd_man_summary_slabd-load "load generator for slabd and other TCP echo servers")
  set(_slabd_man_pages "")
  foreach(program slabd slabd-load)
    set(page "${CMAKE_CURRENT_BINARY_DIR}/${program}.1")
    # Compressed as Debian installs man pages; -n keeps the file's name and time out of it, so an
    # unchanged page builds to the same bytes.
    add_custom_command(OUTPUT "${page}.gz"
      COMMAND "${SLABD_HELP2MAN}" --no-info --section 1 --name "${_slabd_man_summary_${program}}"
              --include "${CMAKE_CURRENT_BINARY_DIR}/${program}.h2m" --output "${page}"
              "$<TARGET_FILE:${program}>"
      COMMAND gzip -9nf "${page}"
      DEPENDS ${program} "${CMAKE_CURRENT_BINARY_DIR}/${program}.h2m"
      COMMENT "Generating the ${program}(1) man page")
    list(APPEND _slabd_man_pages "${page}.gz")
  endforeach()
  add_custom_target(man_pages ALL DEPENDS ${_slabd_man_pages})
  install(FILES ${_slabd_man_pages} DESTINATION "${CMAKE_INSTALL_MANDIR}/man1")
endif()

# ---- The Debian package: cpack -G DEB -------------------------------------------------------
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME slabd)
set(CPACK_PACKAGE_VENDOR "slabd")
set(CPACK_PACKAGE_CONTACT "slabd maintainers <slabd@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "${PROJECT_DESCRIPTION}")
set(CPACK_PACKAGE_DESCRIPTION
    "slabd echoes or relays TCP connections, each held in one block of a slab pool allocated once
at start-up: a fixed memory and connection budget, clean refusal when full, live statistics over
an admin HTTP endpoint, reload and restart without refusing anyone. Includes slabd-load, its load
generator.")
set(CPACK_PACKAGING_INSTALL_PREFIX "${CMAKE_INSTALL_PREFIX}")
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
# Stripped of their symbol tables too (the release build has no debug information).
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
# Runtime dependencies are read from the binaries' own needs (dpkg-shlibdeps); adduser creates
# the system user in postinst.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "adduser")
# The configuration files are conffiles: an upgrade keeps the operator's edits (or asks), and
# purge removes them.
file(WRITE "${CMAKE_CURRENT_BINARY_DIR}/debian/conffiles"
     "${CMAKE_INSTALL_FULL_SYSCONFDIR}/slabd/slabd.toml\n"
     "${CMAKE_INSTALL_FULL_SYSCONFDIR}/logrotate.d/slabd\n")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    "${CMAKE_CURRENT_BINARY_DIR}/debian/conffiles"
    "${PROJECT_SOURCE_DIR}/packaging/debian/postinst"
    "${PROJECT_SOURCE_DIR}/packaging/debian/prerm"
    "${PROJECT_SOURCE_DIR}/packaging/debian/postrm")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
include(CPack)
