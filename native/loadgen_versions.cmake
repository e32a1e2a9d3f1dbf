# The mlcommons-loadgen sdists the harness can build LoadGen from (-DLOADGEN_VERSION=<version>), each with the
# SHA-256 PyPI publishes for it (https://pypi.org/simple/mlcommons-loadgen/, checked 2026-12-07 against
# `pip download --no-deps --no-binary :all:` + sha256sum). pip downloads with --require-hashes and CMake checks
# the file again, so a tampered or swapped sdist fails the configure step.
# To add a round: `python -m pip download --no-deps --no-binary :all: mlcommons-loadgen==X.Y.Z`, sha256sum the
# .tar.gz, compare it with the hash on PyPI's page for that version, add a line below.
set(HARNESS_LOADGEN_DEFAULT_VERSION "6.0.17")
set(HARNESS_LOADGEN_SDIST_SHA256_6.0.17 "a2e85d09e3cc0c606f89bfe1fbf97537c8b5b238ae0afbd923ad9c710fcf2ca8")
set(HARNESS_LOADGEN_SDIST_SHA256_5.1.2 "cd686a6223c978d1056e38a417e4807bfa21c855189f7882d24c8313174bca74")
set(HARNESS_LOADGEN_KNOWN_VERSIONS "6.0.17;5.1.2")
