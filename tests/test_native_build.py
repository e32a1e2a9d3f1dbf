"""The native build (CMakeLists.txt, docs/native.md): which LoadGen the harness drives, what the manifest says
about it, CMake's configure checks, and the C++ unit tests (ctest) in the build folder the install used."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness.loadgen import module as lgm

ROOT = Path(__file__).resolve().parent.parent

# In a child process: the harness's LoadGen drives a null SUT through one query; the child prints the build
# harness.loadgen.module reports, the LoadGen modules loaded, and the loadgen_version LoadGen logged.
_SELF_REPORT = textwrap.dedent(
    """
    import json, os, sys
    from harness.loadgen.module import lg, loadgen_build

    settings = lg.TestSettings()
    settings.scenario = lg.TestScenario.SingleStream
    settings.mode = lg.TestMode.PerformanceOnly
    settings.min_query_count = 1
    settings.max_query_count = 1
    settings.min_duration_ms = 0
    log = lg.LogOutputSettings()
    log.outdir = sys.argv[1]
    log_settings = lg.LogSettings()
    log_settings.log_output = log
    done = lambda samples: lg.QuerySamplesComplete([lg.QuerySampleResponse(s.id, 0, 0) for s in samples])
    sut = lg.ConstructSUT(done, lambda: None)
    qsl = lg.ConstructQSL(1, 1, lambda s: None, lambda s: None)
    lg.StartTestWithLogSettings(sut, qsl, settings, log_settings)
    lg.DestroyQSL(qsl)
    lg.DestroySUT(sut)
    logged = ""
    for line in open(os.path.join(sys.argv[1], "mlperf_log_detail.txt")):
        if '"key": "loadgen_version"' in line:
            logged = json.loads(line.split(":::MLLOG", 1)[1])["value"]
    loaded = sorted(m for m in sys.modules if m.endswith("mlperf_loadgen"))
    print(json.dumps({"build": loadgen_build().to_dict(), "loaded": loaded, "logged": logged}))
    """
)


def _child(code: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )


def _env(choice: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != lgm.ENV_VAR}
    if choice is not None:
        env[lgm.ENV_VAR] = choice
    return env


@pytest.mark.parametrize("choice", [None, "wheel", "source"])
def test_the_harness_drives_one_loadgen_and_reports_what_it_logs(choice: str | None, tmp_path: Path) -> None:
    """auto picks the source build where it is installed, else the wheel; wheel/source force one. Exactly one
    LoadGen module is loaded, and the version and git revision the harness reports are what LoadGen logs."""
    built = lgm.source_build_present()
    if choice == "source" and not built:
        pytest.skip("no source-built LoadGen here: the refusal is test_source_without_a_build_exits_2")
    proc = _child(["-c", _SELF_REPORT, str(tmp_path)], _env(choice))
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    build = out["build"]
    want_source = choice == "source" or (choice is None and built)
    assert build["origin"] == ("source-build" if want_source else "wheel")
    assert out["loaded"] == (["harness_native.mlperf_loadgen"] if want_source else ["mlperf_loadgen"])
    assert build["selected_by"] == (choice or "auto")
    assert out["logged"] == f"{build['version']} @ {build['git_revision']}"
    if want_source:
        info = lgm.build_info()
        assert build["source_kind"] in ("sdist", "source-dir") and build["version"] == info["loadgen_version"]
        assert build["source_kind"] != "sdist" or re.fullmatch(r"[0-9a-f]{64}", build["sdist_sha256"] or "")


def test_source_without_a_build_exits_2(tmp_path: Path) -> None:
    """T2I_HARNESS_LOADGEN=source where harness_native is not importable (python -S: no site-packages, so
    neither the install nor its editable finder): one stderr line, exit code 2, no wheel imported instead."""
    env = _env("source") | {"PYTHONPATH": str(ROOT)}
    proc = _child(["-S", "-m", "harness.loadgen.module"], env)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "harness_native.mlperf_loadgen" in proc.stderr, proc.stderr


def test_an_unknown_choice_exits_2() -> None:
    proc = _child(["-m", "harness.loadgen.module"], _env("newest"))
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: {lgm.ENV_VAR}='newest' is not a LoadGen choice; allowed: auto, wheel, source"


def test_the_manifest_names_the_loadgen_build(monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.run import manifest as mf

    monkeypatch.setattr(mf, "host_info", lambda: {})  # torch's import and CUDA probing: not this test's subject
    config = {"run": {"backend": "fake"}, "model": {"name": "tiny", "height": 8, "width": 8, "steps": 1}}
    manifest = mf.build_manifest(
        config=config, backend={}, model_path="", prompts={}, latents={}, loadgen={"version": "x"}
    )
    recorded = manifest["loadgen"]["build"]
    assert recorded == lgm.loadgen_build().to_dict()
    assert recorded["origin"] in ("source-build", "wheel") and recorded["git_revision"]
    assert recorded["module_path"] == lgm.lg.__file__


def test_backends_and_accuracy_never_name_a_loadgen_module() -> None:
    """.importlinter forbids importing mlperf_loadgen; it cannot forbid harness_native.mlperf_loadgen (a
    submodule of an external package) nor see importlib strings: the source text is checked instead."""
    offenders = [
        str(p.relative_to(ROOT))
        for folder in ("backends", "accuracy")
        for p in sorted((ROOT / folder).rglob("*.py"))
        if "mlperf_loadgen" in p.read_text()
    ]
    assert offenders == []


def _cmake() -> list[str]:
    """cmake and a generator that exists here (ninja comes with the test extra; make may be missing)."""
    cmake = shutil.which("cmake")
    assert cmake, "cmake is not on PATH: it comes with the test extra (pip install -e '.[test]')"
    return [cmake, "-G", "Ninja"] if shutil.which("ninja") else [cmake]


def test_configure_without_a_cxx_compiler_warns_once_and_succeeds(tmp_path: Path) -> None:
    env = dict(os.environ, CXX="/bin/false")
    proc = subprocess.run(
        [*_cmake(), "-S", str(ROOT), "-B", str(tmp_path / "build")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("CMake Warning") == 1
    assert "the harness uses the mlcommons-loadgen wheel and the Python SUT" in " ".join(proc.stderr.split())
    assert not (tmp_path / "build" / "harness_native").exists()


def test_an_unknown_loadgen_version_fails_configure_naming_the_known_ones(tmp_path: Path) -> None:
    proc = subprocess.run(
        [*_cmake(), "-S", str(ROOT), "-B", str(tmp_path / "build"), "-DLOADGEN_VERSION=0.0.1"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    text = " ".join(proc.stderr.split())
    assert proc.returncode != 0
    assert "LOADGEN_VERSION=0.0.1 is not in native/loadgen_versions.cmake" in text
    table = (ROOT / "native" / "loadgen_versions.cmake").read_text()
    known = re.search(r'HARNESS_LOADGEN_KNOWN_VERSIONS "([^"]+)"', table)
    assert known and {"6.0.17", "5.1.2"} <= set(known.group(1).split(";"))
    assert f"known versions: {', '.join(known.group(1).split(';'))}" in text


def test_ctest_passes_in_the_installs_build_folder() -> None:
    """The C++ unit tests (native/sut, native/accuracy_log) as the install built them: build_info.json names
    the build folder. A machine with a C++ compiler must have it; without one the install built nothing."""
    info = lgm.build_info()
    if not info:
        if not (shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")):
            pytest.skip("no C++ compiler here: the install built no native parts (CMake warned)")
        pytest.fail(
            "harness_native is not installed though this machine has a C++ compiler: the native build is "
            "missing (reinstall: pip install -e '.[test]'; see docs/native.md)"
        )
    build_dir = Path(info["build_dir"])
    assert (build_dir / "CTestTestfile.cmake").is_file(), (
        f"build_info.json names {build_dir} as the build folder, but it holds no ctest files "
        "(deleted? reinstall: pip install -e '.[test]')"
    )
    ctest = shutil.which("ctest")
    assert ctest, "ctest is not on PATH (it comes with cmake: apt install cmake or pip install cmake)"
    proc = subprocess.run(
        [ctest, "--test-dir", str(build_dir), "--output-on-failure", "--no-tests=error", "--timeout", "60"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    # CTest 3 says "100% tests passed, 0 tests failed out of N", CTest 4 "100% tests passed out of N".
    assert re.search(r"100% tests passed(, 0 tests failed)? out of [1-9]", proc.stdout), proc.stdout[-2000:]
