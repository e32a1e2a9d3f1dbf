# Where LoadGen's sources come from: sets HARNESS_LOADGEN_DIR (the loadgen/ folder to compile),
# HARNESS_LOADGEN_GENERATED_DIR (mlperf_conf.h and version_generated.cc) and the HARNESS_LOADGEN_* facts
# build_info.json records.
#
#   -DLOADGEN_SOURCE_DIR=<inference checkout>/loadgen   a round's tag of github.com/mlcommons/inference
#   -DLOADGEN_VERSION=6.0.17                             an mlcommons-loadgen sdist from PyPI (the default),
#                                                        hash-pinned in native/loadgen_versions.cmake

# LOADGEN_VERSION, LOADGEN_SOURCE_DIR and LOADGEN_CACHE_DIR are declared (and the version checked against
# native/loadgen_versions.cmake) by the top-level CMakeLists.txt, before it looks for a compiler.

set(HARNESS_LOADGEN_GENERATED_DIR "${CMAKE_BINARY_DIR}/loadgen-generated")
file(MAKE_DIRECTORY "${HARNESS_LOADGEN_GENERATED_DIR}")

# LoadGen's mlperf.conf as a C string, the way its setup.py and CMakeLists.txt write mlperf_conf.h.
function(_harness_write_mlperf_conf_h conf header)
  file(READ "${conf}" text)
  string(REPLACE "\\" "\\\\" text "${text}")
  string(REPLACE "\"" "\\\"" text "${text}")
  string(REPLACE "\n" "\\n\"\n\"" text "${text}")
  file(WRITE "${header}.tmp" "const char* mlperf_conf =\n\"${text}\";\n")
  file(COPY_FILE "${header}.tmp" "${header}" ONLY_IF_DIFFERENT)
  file(REMOVE "${header}.tmp")
endfunction()

# The harness cache the Python side uses (harness/run/manifest.py cache_dir): $HARNESS_CACHE_DIR, else
# ~/.cache/t2i-harness.
function(_harness_cache_dir out)
  if(LOADGEN_CACHE_DIR)
    set(dir "${LOADGEN_CACHE_DIR}")
  elseif(DEFINED ENV{HARNESS_CACHE_DIR} AND NOT "$ENV{HARNESS_CACHE_DIR}" STREQUAL "")
    set(dir "$ENV{HARNESS_CACHE_DIR}/loadgen-sdist")
  else()
    set(dir "$ENV{HOME}/.cache/t2i-harness/loadgen-sdist")
  endif()
  set(${out} "${dir}" PARENT_SCOPE)
endfunction()

if(LOADGEN_SOURCE_DIR)
  # 1. A checkout: compiled in place; the generated files go into the build folder, not the checkout.
  get_filename_component(HARNESS_LOADGEN_DIR "${LOADGEN_SOURCE_DIR}" ABSOLUTE)
  foreach(f VERSION.txt mlperf.conf loadgen.cc version_generator.py bindings/python_api.cc)
    if(NOT EXISTS "${HARNESS_LOADGEN_DIR}/${f}")
      message(FATAL_ERROR "LOADGEN_SOURCE_DIR=${LOADGEN_SOURCE_DIR} is not LoadGen's loadgen/ folder "
                          "(no ${f}); allowed: the loadgen/ folder of a github.com/mlcommons/inference checkout")
    endif()
  endforeach()
  # test_settings_internal.cc includes "mlperf_conf.h" from its own folder first: one left in the checkout by
  # an earlier in-tree build would be compiled instead of the one generated here from mlperf.conf.
  if(EXISTS "${HARNESS_LOADGEN_DIR}/mlperf_conf.h")
    _harness_write_mlperf_conf_h("${HARNESS_LOADGEN_DIR}/mlperf.conf" "${HARNESS_LOADGEN_GENERATED_DIR}/mlperf_conf.h")
    file(READ "${HARNESS_LOADGEN_DIR}/mlperf_conf.h" in_tree)
    file(READ "${HARNESS_LOADGEN_GENERATED_DIR}/mlperf_conf.h" generated)
    if(NOT in_tree STREQUAL generated)
      message(FATAL_ERROR "${HARNESS_LOADGEN_DIR}/mlperf_conf.h does not match its mlperf.conf (left by an "
                          "earlier build?); delete it: the harness generates it into the build folder")
    endif()
  endif()
  set(HARNESS_LOADGEN_SOURCE_KIND "source-dir")
  set(HARNESS_LOADGEN_SDIST_SHA256 "")
  find_package(Git QUIET)
  set(HARNESS_LOADGEN_SOURCE_GIT "")
  if(GIT_FOUND)
    execute_process(COMMAND "${GIT_EXECUTABLE}" -C "${HARNESS_LOADGEN_DIR}" describe --tags --always --dirty
                    OUTPUT_VARIABLE HARNESS_LOADGEN_SOURCE_GIT OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
  endif()
  # version_generated.cc as LoadGen's CMakeLists.txt makes it: VERSION.txt, the checkout's git record
  # (revision, log, status: "NA" outside git) and the SHA-1 of every file in loadgen/.
  execute_process(
    COMMAND "${Python_EXECUTABLE}" "${HARNESS_LOADGEN_DIR}/version_generator.py"
            "${HARNESS_LOADGEN_GENERATED_DIR}/version_generated.cc" "${HARNESS_LOADGEN_DIR}"
    WORKING_DIRECTORY "${HARNESS_LOADGEN_DIR}"  # its `git status -s -uno .` means loadgen/, as in setup.py
    RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "LoadGen's version_generator.py failed (${rc}) in ${HARNESS_LOADGEN_DIR}")
  endif()
  set(HARNESS_LOADGEN_VERSION_CC "${HARNESS_LOADGEN_GENERATED_DIR}/version_generated.cc")
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS
               "${HARNESS_LOADGEN_DIR}/VERSION.txt" "${HARNESS_LOADGEN_DIR}/mlperf.conf")
else()
  # 2. A pinned sdist: downloaded once into the cache through pip (hash-checked), extracted into the build folder.
  set(sha256 "${HARNESS_LOADGEN_SDIST_SHA256_${LOADGEN_VERSION}}")
  set(name "mlcommons_loadgen-${LOADGEN_VERSION}")
  _harness_cache_dir(cache)
  set(sdist "${cache}/${name}.tar.gz")
  set(have "")
  if(EXISTS "${sdist}")
    file(SHA256 "${sdist}" have)
  endif()
  if(NOT have STREQUAL sha256)
    file(MAKE_DIRECTORY "${cache}")
    file(REMOVE "${sdist}")
    set(req "${CMAKE_BINARY_DIR}/loadgen-sdist-requirements.txt")
    file(WRITE "${req}" "mlcommons-loadgen==${LOADGEN_VERSION} --hash=sha256:${sha256}\n")
    message(STATUS "Downloading the mlcommons-loadgen ${LOADGEN_VERSION} sdist into ${cache}")
    execute_process(
      COMMAND "${Python_EXECUTABLE}" -m pip download --no-deps --no-binary :all: --require-hashes
              --disable-pip-version-check -q -r "${req}" -d "${cache}"
      RESULT_VARIABLE rc)
    if(NOT rc EQUAL 0 OR NOT EXISTS "${sdist}")
      message(FATAL_ERROR "could not download the mlcommons-loadgen ${LOADGEN_VERSION} sdist (pip exit ${rc}); "
                          "offline, put ${name}.tar.gz (sha256 ${sha256}) into ${cache}")
    endif()
    file(SHA256 "${sdist}" have)
    if(NOT have STREQUAL sha256)
      file(REMOVE "${sdist}")
      message(FATAL_ERROR "${sdist}: sha256 ${have}, expected ${sha256} (native/loadgen_versions.cmake)")
    endif()
  endif()
  set(extract "${CMAKE_BINARY_DIR}/loadgen-sdist")
  set(HARNESS_LOADGEN_DIR "${extract}/${name}")
  if(NOT EXISTS "${extract}/.sha256" OR NOT EXISTS "${HARNESS_LOADGEN_DIR}/loadgen.cc")
    set(stamp "")
  else()
    file(READ "${extract}/.sha256" stamp)
  endif()
  if(NOT stamp STREQUAL sha256)
    file(REMOVE_RECURSE "${extract}")
    file(ARCHIVE_EXTRACT INPUT "${sdist}" DESTINATION "${extract}")
    file(WRITE "${extract}/.sha256" "${sha256}")
  endif()
  set(HARNESS_LOADGEN_SOURCE_KIND "sdist")
  set(HARNESS_LOADGEN_SDIST_SHA256 "${sha256}")
  set(HARNESS_LOADGEN_SOURCE_GIT "")
  # The sdist ships the version_generated.cc made from the release's git checkout (its revision, log and file
  # SHA-1s; the build date is the sdist's): compiled as shipped, so the detail log says "<version> @ <revision>"
  # like the wheel of the same release. pip's own build of the sdist regenerates it outside git ("NA").
  set(HARNESS_LOADGEN_VERSION_CC "${HARNESS_LOADGEN_DIR}/generated/version_generated.cc")
  if(NOT EXISTS "${HARNESS_LOADGEN_VERSION_CC}")
    set(HARNESS_LOADGEN_VERSION_CC "${HARNESS_LOADGEN_GENERATED_DIR}/version_generated.cc")
    execute_process(
      COMMAND "${Python_EXECUTABLE}" "${HARNESS_LOADGEN_DIR}/version_generator.py"
              "${HARNESS_LOADGEN_VERSION_CC}" "${HARNESS_LOADGEN_DIR}"
      WORKING_DIRECTORY "${HARNESS_LOADGEN_DIR}"
      RESULT_VARIABLE rc)
    if(NOT rc EQUAL 0)
      message(FATAL_ERROR "LoadGen's version_generator.py failed (${rc}) in ${HARNESS_LOADGEN_DIR}")
    endif()
  endif()
endif()

# mlperf_conf.h from mlperf.conf, as setup.py does, into the build folder (the sdist's own copy is replaced
# there too: it is the extracted copy, never a checkout).
_harness_write_mlperf_conf_h("${HARNESS_LOADGEN_DIR}/mlperf.conf" "${HARNESS_LOADGEN_GENERATED_DIR}/mlperf_conf.h")
if(HARNESS_LOADGEN_SOURCE_KIND STREQUAL "sdist")
  file(COPY_FILE "${HARNESS_LOADGEN_GENERATED_DIR}/mlperf_conf.h" "${HARNESS_LOADGEN_DIR}/mlperf_conf.h"
       ONLY_IF_DIFFERENT)
endif()

file(READ "${HARNESS_LOADGEN_DIR}/VERSION.txt" HARNESS_LOADGEN_VERSION)
string(STRIP "${HARNESS_LOADGEN_VERSION}" HARNESS_LOADGEN_VERSION)
message(STATUS "LoadGen ${HARNESS_LOADGEN_VERSION} from ${HARNESS_LOADGEN_SOURCE_KIND}: ${HARNESS_LOADGEN_DIR}")
