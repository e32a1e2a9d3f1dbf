"""The LoadGen Python module the harness drives, and which build it is.

`lg` is the source-built `harness_native.mlperf_loadgen` (CMakeLists.txt, docs/native.md) when it was built,
else the `mlperf_loadgen` of the mlcommons-loadgen wheel. `T2I_HARNESS_LOADGEN=auto|wheel|source` overrides
the choice. Only one of the two is ever imported in a process: both register the same pybind11 types
(TestSettings, QuerySample, ...), and a second registration fails or mixes the two LoadGens.

`python -m harness.loadgen.module` prints the build the harness uses (JSON).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import json
import os
import re
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

ENV_VAR = "T2I_HARNESS_LOADGEN"
CHOICES = ("auto", "wheel", "source")
NATIVE_PACKAGE = "harness_native"
SOURCE_MODULE = "harness_native.mlperf_loadgen"
WHEEL_MODULE = "mlperf_loadgen"

# LoadGen compiles its git record in as string literals (generated/version_generated.cc, LoadgenGitLog): the
# first line of `git log --pretty=oneline` is "<40 hex> <subject>"; its first 10 digits are LoadgenGitRevision,
# which LoadGen logs as "loadgen_version": "<version> @ <revision>". The file SHA-1 list beside it has
# "<40 hex> /<path>" lines, hence the [^/].
_GIT_LOG_HEAD = re.compile(rb"([0-9a-f]{40}) [^/\x00]")


@dataclass(frozen=True)
class LoadGenBuild:
    """Which LoadGen the process runs: recorded in every run's manifest."""

    origin: str  # "source-build" (harness_native) or "wheel" (mlcommons-loadgen)
    version: str  # LoadGen's VERSION.txt (the source build) or the wheel's version
    git_revision: str  # LoadgenGitRevision() as LoadGen logs it ("6.0.17 @ <this>"); "NA" outside git
    selected_by: str  # T2I_HARNESS_LOADGEN's value ("auto" when unset)
    module_path: str
    source_kind: str | None = None  # source build: "sdist" or "source-dir"
    sdist_sha256: str | None = None  # source build from an sdist: its verified SHA-256
    source_git: str | None = None  # source build from a checkout: `git describe --always --dirty` of it
    compiler: str | None = None
    build_type: str | None = None
    build_dir: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def requested() -> str:
    """T2I_HARNESS_LOADGEN, checked: one stderr line and exit code 2 for a value outside CHOICES."""
    value = os.environ.get(ENV_VAR, "auto").strip().lower() or "auto"
    if value not in CHOICES:
        _refuse(f"{ENV_VAR}={os.environ.get(ENV_VAR)!r} is not a LoadGen choice; allowed: {', '.join(CHOICES)}")
    return value


def source_build_present() -> bool:
    """Whether the source-built module is installed, without importing it (find_spec on the package only)."""
    spec = importlib.util.find_spec(NATIVE_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return False
    return any(any(Path(d).glob("mlperf_loadgen*.so")) for d in spec.submodule_search_locations)


def build_info() -> dict[str, Any]:
    """harness_native/build_info.json as CMake wrote it; empty without a source build."""
    spec = importlib.util.find_spec(NATIVE_PACKAGE)
    for d in (spec.submodule_search_locations or []) if spec else []:
        path = Path(d) / "build_info.json"
        if path.is_file():
            return dict(json.loads(path.read_text()))
    return {}


def _refuse(message: str) -> None:
    # Raised while modules import, before the CLI's error handling runs: one line and the CLI's exit code.
    sys.stderr.write(f"error: {message}\n")
    raise SystemExit(2)


def _load() -> tuple[ModuleType, str]:
    choice = requested()
    if choice == "wheel" or (choice == "auto" and not source_build_present()):
        return importlib.import_module(WHEEL_MODULE), choice
    if not source_build_present():
        _refuse(
            f"{ENV_VAR}=source but the source-built LoadGen ({SOURCE_MODULE}) is not installed; "
            "build it with a C++ compiler (`pip install -e .`, docs/native.md) or use auto/wheel"
        )
    return importlib.import_module(SOURCE_MODULE), choice


def _git_revision(module_path: str) -> str:
    try:
        data = Path(module_path).read_bytes()
    except OSError:
        return "unknown"
    if b"LoadgenVersionInfo" not in data:  # LoadGen's own detail-log header: the library is in this file
        core = [p for p in Path(module_path).parent.glob("libmlperf_loadgen_core*") if p.is_file()]
        data = core[0].read_bytes() if core else data
    m = _GIT_LOG_HEAD.search(data)
    # Without a git log, LoadGen was built outside a git checkout: version_generator.py's stubs say "NA".
    return m.group(1)[:10].decode() if m else "NA"


def _describe(module: ModuleType, selected_by: str) -> LoadGenBuild:
    path = str(getattr(module, "__file__", "") or "")
    if module.__name__ == SOURCE_MODULE:
        info = build_info()
        return LoadGenBuild(
            origin="source-build",
            version=str(info.get("loadgen_version", "unknown")),
            git_revision=_git_revision(path),
            selected_by=selected_by,
            module_path=path,
            source_kind=info.get("source_kind"),
            sdist_sha256=info.get("sdist_sha256") or None,
            source_git=info.get("source_git") or None,
            compiler=info.get("compiler"),
            build_type=info.get("build_type"),
            build_dir=info.get("build_dir"),
        )
    try:
        version = importlib.metadata.version("mlcommons-loadgen")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return LoadGenBuild("wheel", version, _git_revision(path), selected_by, path)


_selected_by: str
if TYPE_CHECKING:
    import mlperf_loadgen as lg
else:
    lg, _selected_by = _load()


def loadgen_build() -> LoadGenBuild:
    """The build behind `lg` (reads the module file once per call: a few MB, milliseconds)."""
    return _describe(lg, _selected_by)


if __name__ == "__main__":
    print(json.dumps(loadgen_build().to_dict(), indent=2))
