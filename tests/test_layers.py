"""The layer contract (.importlinter, drawn in docs/architecture.md) holds, and it catches a back-edge."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("harness", "backends", "accuracy", "tools")


# lint-imports on the tree at `root`: the editable install's import hook (scikit-build-core's redirecting
# finder, ahead of PYTHONPATH on sys.meta_path) would hand it this checkout's packages instead of the copy's.
_LINT = (
    "import sys; "
    "sys.meta_path[:] = [f for f in sys.meta_path if type(f).__name__ != 'ScikitBuildRedirectingFinder']; "
    "sys.argv = ['lint-imports', '--no-cache']; "
    "from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
)


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    if shutil.which("lint-imports", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("lint-imports is not installed (pip install -e '.[test]')")
    return subprocess.run(
        [sys.executable, "-c", _LINT],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=240,
        env={"PYTHONPATH": str(root)},
    )


def _copy_tree(dst: Path) -> Path:
    for name in PACKAGES:
        shutil.copytree(ROOT / name, dst / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / ".importlinter", dst / ".importlinter")
    return dst


def test_the_tree_keeps_the_layer_contract() -> None:
    proc = _lint_imports(ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


@pytest.mark.parametrize(
    ("module", "back_edge", "expected"),
    [
        # a lower layer importing a higher one
        ("harness/data/qsl.py", "import harness.run.benchmark", "harness.data is not allowed to import harness.run"),
        # the report reading a command's internals (the cycle the layout removed)
        (
            "harness/report/dir_tables.py",
            "import harness.commands.sweep",
            "harness.report is not allowed to import harness.commands",
        ),
        # a backend reaching into the harness
        ("backends/fake.py", "import harness.config", "backends.fake -> harness.config"),
    ],
)
def test_a_back_edge_breaks_the_contract(tmp_path: Path, module: str, back_edge: str, expected: str) -> None:
    tree = _copy_tree(tmp_path)
    path = tree / module
    path.write_text(path.read_text() + f"\n{back_edge}  # noqa\n")
    proc = _lint_imports(tree)
    assert proc.returncode != 0
    assert expected in proc.stdout, proc.stdout[-3000:]
