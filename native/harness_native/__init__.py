"""Native parts of the harness, built by CMakeLists.txt and installed with the package (docs/native.md).

`mlperf_loadgen`: LoadGen's Python module built from a pinned source (the harness imports it through
harness.loadgen.module, never next to the wheel's mlperf_loadgen); `build_info.json`: which source and
compiler built it. Nothing is imported here: importing one extension must not load another.
"""
