# The harness_native package: LoadGen's library (mlperf_loadgen_core), its Python module (mlperf_loadgen), the
# extensions of native/sut and native/accuracy_log (harness_add_native_module), build_info.json.
#
# The package is laid out twice, identically: in the build folder (${HARNESS_NATIVE_BUILD_DIR}, so a plain
# `cmake --build` tree can be imported with PYTHONPATH=<build>) and at the wheel's root on install.
# RPATH $ORIGIN: every module finds libmlperf_loadgen_core.so beside it, in both places.

set(HARNESS_NATIVE_BUILD_DIR "${CMAKE_BINARY_DIR}/harness_native")
set(HARNESS_NATIVE_INSTALL_DIR "harness_native")
file(MAKE_DIRECTORY "${HARNESS_NATIVE_BUILD_DIR}")

# 1. LoadGen's library: the sources its setup.py compiles (those a round's tree has), plus its C API.
#    SHARED, so that LoadGen's Python module and the SUT core share one LoadGen per process: the SUT core's
#    QuerySamplesComplete must reach the LoadGen instance that runs StartTest.
set(_lg_sources "")
foreach(f early_stopping.cc issue_query_controller.cc loadgen.cc logging.cc test_settings_internal.cc utils.cc
          version.cc results.cc bindings/c_api.cc)
  if(EXISTS "${HARNESS_LOADGEN_DIR}/${f}")
    list(APPEND _lg_sources "${HARNESS_LOADGEN_DIR}/${f}")
  endif()
endforeach()
add_library(mlperf_loadgen_core SHARED ${_lg_sources} "${HARNESS_LOADGEN_VERSION_CC}")
# The generated folder comes first: mlperf_conf.h is the one made from this source's mlperf.conf.
target_include_directories(mlperf_loadgen_core BEFORE PUBLIC "${HARNESS_LOADGEN_GENERATED_DIR}")
target_include_directories(mlperf_loadgen_core PUBLIC "${HARNESS_LOADGEN_DIR}")
find_package(Threads REQUIRED)
target_link_libraries(mlperf_loadgen_core PUBLIC Threads::Threads)
target_compile_features(mlperf_loadgen_core PUBLIC cxx_std_14)
string(REGEX MATCH "^([0-9]+)\\.([0-9]+)" _ "${HARNESS_LOADGEN_VERSION}")
target_compile_definitions(mlperf_loadgen_core PUBLIC MAJOR_VERSION=${CMAKE_MATCH_1} MINOR_VERSION=${CMAKE_MATCH_2})
set_target_properties(mlperf_loadgen_core PROPERTIES
  POSITION_INDEPENDENT_CODE ON
  LIBRARY_OUTPUT_DIRECTORY "${HARNESS_NATIVE_BUILD_DIR}")
install(TARGETS mlperf_loadgen_core LIBRARY DESTINATION "${HARNESS_NATIVE_INSTALL_DIR}")

# 2. harness_add_native_module(<name> SOURCES <files...> [LINK_LOADGEN])
#    A pybind11 module harness_native.<name>, installed into harness_native/; LINK_LOADGEN links it to the
#    shared LoadGen (and its headers). Called by native/sut/CMakeLists.txt and native/accuracy_log/CMakeLists.txt.
function(harness_add_native_module name)
  cmake_parse_arguments(PARSE_ARGV 1 ARG "LINK_LOADGEN" "" "SOURCES")
  if(NOT ARG_SOURCES)
    message(FATAL_ERROR "harness_add_native_module(${name}): no SOURCES")
  endif()
  pybind11_add_module(${name} ${ARG_SOURCES})
  if(ARG_LINK_LOADGEN)
    target_link_libraries(${name} PRIVATE mlperf_loadgen_core)
  endif()
  set_target_properties(${name} PROPERTIES
    LIBRARY_OUTPUT_DIRECTORY "${HARNESS_NATIVE_BUILD_DIR}"
    BUILD_RPATH "$ORIGIN"
    INSTALL_RPATH "$ORIGIN")
  install(TARGETS ${name} LIBRARY DESTINATION "${HARNESS_NATIVE_INSTALL_DIR}")
endfunction()

# 3. LoadGen's own Python module, from its bindings, on the shared library.
harness_add_native_module(mlperf_loadgen SOURCES "${HARNESS_LOADGEN_DIR}/bindings/python_api.cc" LINK_LOADGEN)

# 4. The package files: __init__.py and build_info.json (what harness.loadgen.module reports and the
#    manifest records; build_dir is where `ctest` runs the native tests, tests/test_native_build.py).
if(CMAKE_BUILD_TYPE)
  set(_build_type "${CMAKE_BUILD_TYPE}")
else()
  set(_build_type "none")
endif()
set(_build_info [=[{
  "loadgen_version": "@HARNESS_LOADGEN_VERSION@",
  "source_kind": "@HARNESS_LOADGEN_SOURCE_KIND@",
  "source": "@HARNESS_LOADGEN_DIR@",
  "sdist_sha256": "@HARNESS_LOADGEN_SDIST_SHA256@",
  "source_git": "@HARNESS_LOADGEN_SOURCE_GIT@",
  "compiler": "@CMAKE_CXX_COMPILER_ID@ @CMAKE_CXX_COMPILER_VERSION@",
  "build_type": "@_build_type@",
  "pybind11": "@pybind11_VERSION@",
  "python": "@Python_VERSION@",
  "build_dir": "@CMAKE_BINARY_DIR@"
}
]=])
file(CONFIGURE OUTPUT "${HARNESS_NATIVE_BUILD_DIR}/build_info.json" CONTENT "${_build_info}" @ONLY)
configure_file("${PROJECT_SOURCE_DIR}/native/harness_native/__init__.py" "${HARNESS_NATIVE_BUILD_DIR}/__init__.py"
               COPYONLY)
install(FILES "${HARNESS_NATIVE_BUILD_DIR}/__init__.py" "${HARNESS_NATIVE_BUILD_DIR}/build_info.json"
        DESTINATION "${HARNESS_NATIVE_INSTALL_DIR}")
