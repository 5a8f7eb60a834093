# Helpers shared by every module so that each module's CMakeLists stays a list of files.

set(AGENTRY_WARNINGS -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor
    -Wold-style-cast -Wcast-align -Woverloaded-virtual -Wimplicit-fallthrough)

# Boost 1.74's asio/awaitable.hpp uses std::exchange without including <utility>;
# force-including it keeps every translation unit that touches Asio compiling with g++ 12.
add_compile_options("SHELL:-include utility")

function(agentry_target_warnings target)
  target_compile_options(${target} PRIVATE ${AGENTRY_WARNINGS})
  if(AGENTRY_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()

set_property(GLOBAL PROPERTY AGENTRY_MODULES "")

# From <prefix>/<libdir>/pkgconfig back up to <prefix>, for relocatable .pc files.
file(RELATIVE_PATH AGENTRY_PC_UP "/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/")
string(REGEX REPLACE "/$" "" AGENTRY_PC_UP "${AGENTRY_PC_UP}")

# agentry_add_module(NAME <m> SOURCES ... HEADERS ... PUBLIC_DEPS ... PRIVATE_DEPS ...
#                    PKG_REQUIRES "<pkg-config names>")
# Builds library agentry_<m> with alias agentry::<m>, installs its headers under
# include/agentry/<m>/ and exports it as component <m> of the agentry CMake package.
function(agentry_add_module)
  cmake_parse_arguments(M "" "NAME;PKG_REQUIRES" "SOURCES;HEADERS;PUBLIC_DEPS;PRIVATE_DEPS;COMPONENT_DEPS;FIND_DEPS" ${ARGN})
  set(target agentry_${M_NAME})
  add_library(${target} ${M_SOURCES} ${M_HEADERS})
  add_library(agentry::${M_NAME} ALIAS ${target})
  set_target_properties(${target} PROPERTIES EXPORT_NAME ${M_NAME} OUTPUT_NAME agentry_${M_NAME})
  target_include_directories(${target} PUBLIC
    $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}>
    $<BUILD_INTERFACE:${PROJECT_BINARY_DIR}>
    $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
  target_link_libraries(${target} PUBLIC ${M_PUBLIC_DEPS} PRIVATE ${M_PRIVATE_DEPS})
  agentry_target_warnings(${target})
  install(TARGETS ${target} EXPORT agentry-${M_NAME}-targets
    ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
    LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
  install(FILES ${M_HEADERS} DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/agentry/${M_NAME})
  install(EXPORT agentry-${M_NAME}-targets NAMESPACE agentry::
    DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/agentry)
  # Per-component dependency file read by agentryConfig.cmake.
  set(deps_file "${PROJECT_BINARY_DIR}/agentry-${M_NAME}-deps.cmake")
  set(content "")
  foreach(dep IN LISTS M_FIND_DEPS)
    string(APPEND content "find_dependency(${dep})\n")
  endforeach()
  foreach(dep IN LISTS M_COMPONENT_DEPS)
    string(APPEND content "agentry_load_component(${dep})\n")
  endforeach()
  file(WRITE "${deps_file}" "${content}")
  install(FILES "${deps_file}" DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/agentry)
  # pkg-config file: agentry-<m>.pc
  set(AGENTRY_PC_NAME ${M_NAME})
  set(AGENTRY_PC_REQUIRES "")
  foreach(dep IN LISTS M_COMPONENT_DEPS)
    string(APPEND AGENTRY_PC_REQUIRES " agentry-${dep}")
  endforeach()
  if(M_PKG_REQUIRES)
    string(APPEND AGENTRY_PC_REQUIRES " ${M_PKG_REQUIRES}")
  endif()
  configure_file(${PROJECT_SOURCE_DIR}/cmake/agentry-module.pc.in
    ${PROJECT_BINARY_DIR}/pkgconfig/agentry-${M_NAME}.pc @ONLY)
  install(FILES ${PROJECT_BINARY_DIR}/pkgconfig/agentry-${M_NAME}.pc
    DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
  set_property(GLOBAL APPEND PROPERTY AGENTRY_MODULES ${M_NAME})
endfunction()

# agentry_add_test(NAME <n> SOURCES ... DEPS ... [LABELS ...])
# One GoogleTest executable; every TEST() becomes its own ctest entry.
function(agentry_add_test)
  cmake_parse_arguments(T "" "NAME" "SOURCES;DEPS;LABELS" ${ARGN})
  add_executable(${T_NAME} ${T_SOURCES})
  target_link_libraries(${T_NAME} PRIVATE ${T_DEPS} GTest::gmock GTest::gtest_main Threads::Threads)
  target_include_directories(${T_NAME} PRIVATE ${PROJECT_SOURCE_DIR})
  agentry_target_warnings(${T_NAME})
  if(NOT T_LABELS)
    set(T_LABELS unit)
  endif()
  gtest_discover_tests(${T_NAME} DISCOVERY_MODE PRE_TEST
    PROPERTIES LABELS "${T_LABELS}" TIMEOUT 120)
endfunction()

# agentry_add_fuzzer(NAME <n> SOURCES ... DEPS ...)
# Under AGENTRY_FUZZ: a libFuzzer binary. Otherwise: the same entry point linked with
# a driver that replays tests/fuzz/corpus/<n>/ as a ctest regression test.
function(agentry_add_fuzzer)
  cmake_parse_arguments(F "" "NAME" "SOURCES;DEPS" ${ARGN})
  add_executable(${F_NAME} ${F_SOURCES})
  target_link_libraries(${F_NAME} PRIVATE ${F_DEPS})
  agentry_target_warnings(${F_NAME})
  if(AGENTRY_FUZZ)
    target_link_options(${F_NAME} PRIVATE -fsanitize=fuzzer)
    set_property(GLOBAL APPEND PROPERTY AGENTRY_FUZZERS ${F_NAME})
  else()
    target_sources(${F_NAME} PRIVATE ${PROJECT_SOURCE_DIR}/tests/fuzz/replay_main.cc)
    add_test(NAME ${F_NAME}_corpus COMMAND ${F_NAME} ${PROJECT_SOURCE_DIR}/tests/fuzz/corpus/${F_NAME})
    set_tests_properties(${F_NAME}_corpus PROPERTIES LABELS fuzz-corpus TIMEOUT 120)
  endif()
endfunction()

# agentry_add_benchmark(NAME <n> SOURCES ... DEPS ...)
function(agentry_add_benchmark)
  cmake_parse_arguments(B "" "NAME" "SOURCES;DEPS" ${ARGN})
  add_executable(${B_NAME} ${B_SOURCES})
  target_link_libraries(${B_NAME} PRIVATE ${B_DEPS} benchmark::benchmark Threads::Threads)
  agentry_target_warnings(${B_NAME})
  set_property(GLOBAL APPEND PROPERTY AGENTRY_BENCHMARKS ${B_NAME})
endfunction()

# Writes agentryConfig.cmake and its version file; call once, after every module.
function(agentry_install_package)
  include(CMakePackageConfigHelpers)
  get_property(modules GLOBAL PROPERTY AGENTRY_MODULES)
  set(AGENTRY_ALL_COMPONENTS "${modules}")
  configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/agentryConfig.cmake.in
    ${PROJECT_BINARY_DIR}/agentryConfig.cmake
    INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/agentry)
  write_basic_package_version_file(${PROJECT_BINARY_DIR}/agentryConfigVersion.cmake
    COMPATIBILITY SameMinorVersion)
  install(FILES ${PROJECT_BINARY_DIR}/agentryConfig.cmake ${PROJECT_BINARY_DIR}/agentryConfigVersion.cmake
    DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/agentry)
endfunction()
