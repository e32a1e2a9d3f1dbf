"""The documentation's commands work: every `python -m harness ...` command in a shell block of README.md
and docs/*.md (fenced with bash, sh, shell, console or no language) parses with the real argument parser
of its command (nothing runs), and every file it names exists in the checkout or is written by an earlier
command of the same block (an output option's value, its default included). The docs hang together: every
relative link (there and in benchmarks/results/README.md) goes to a file that exists (and to a heading of
it, where it names one), and every `python -m tools.NAME` names a module that exists.

What the reader fills in is written so that it can be told apart: a path component in capitals
(`runs/RUN_DIR`, `DIR`, `MY_PLAN.toml`, `RUN_DIRS...`), a path under `~` or `$HOME`, or `<...>`.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness import cli

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL_BLOCKS = {"", "bash", "sh", "shell", "console"}
FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
# Options whose value a command writes, not reads.
OUTPUT_DESTS = {"out", "output", "output_dir"}
# A path-looking token: a folder in it, or a file extension.
FILE_EXT = re.compile(r"\.(toml|tsv|npy|npz|pt|pth|conf|json|csv|txt|png|md|html|py|sh|whl)$")
PLACEHOLDER_PART = re.compile(r"[A-Z][A-Z0-9_]*(\.\.\.)?(\.[A-Za-z0-9]+)?")


@dataclass(frozen=True)
class Command:
    doc: str
    block: int  # index of the fenced block in its file
    line: int  # 1-based line of the command in its file
    argv: tuple[str, ...]  # what follows `python -m harness`

    def __str__(self) -> str:
        return f"{self.doc}:{self.line}: python -m harness {shlex.join(self.argv)}"


def harness_commands(path: Path) -> list[Command]:
    text = path.read_text(encoding="utf-8")
    found = []
    for index, block in enumerate(FENCE.finditer(text)):
        if block.group(1).lower() not in SHELL_BLOCKS:
            continue
        first_line = text.count("\n", 0, block.start(2)) + 1
        # Join continuation lines, keeping each command's first line number.
        lines: list[tuple[int, str]] = []
        pending = ""
        for offset, raw in enumerate(block.group(2).splitlines()):
            start = pending == ""
            pending += raw[:-1] + " " if raw.rstrip().endswith("\\") else raw
            if start:
                lines.append((first_line + offset, ""))
            if not raw.rstrip().endswith("\\"):
                lines[-1] = (lines[-1][0], pending)
                pending = ""
        for number, line in lines:
            line = re.sub(r"<[^<>\n]*>", "PLACEHOLDER", line)
            tokens = shlex.split(line, comments=True)
            for part in _split_on_operators(tokens):
                argv = _after_python_m_harness(part)
                if argv is not None:
                    found.append(Command(path.name, index, number, tuple(argv)))
    return found


def _split_on_operators(tokens: list[str]) -> list[list[str]]:
    parts: list[list[str]] = [[]]
    for token in tokens:
        if token in ("&&", "||", ";", "|"):
            parts.append([])
        else:
            parts[-1].append(token)
    return parts


def _after_python_m_harness(tokens: list[str]) -> list[str] | None:
    while tokens and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=\S*", tokens[0]):  # VAR=value prefixes
        tokens = tokens[1:]
    if len(tokens) >= 3 and tokens[0] in ("python", "python3") and tokens[1:3] == ["-m", "harness"]:
        return tokens[3:]
    return None


ALL = [c for doc in DOCS for c in harness_commands(doc)]


def _parser(argv: tuple[str, ...]) -> tuple[object, list[str]]:
    commands = cli.subcommands()
    if argv and argv[0] in commands:
        return importlib.import_module(commands[argv[0]]).build_parser(), list(argv[1:])
    return importlib.import_module(commands[cli.DEFAULT_COMMAND]).build_parser(), list(argv)


def _parse(command: Command) -> tuple[object, object | None, str]:
    """(parser, namespace, error): namespace None for --help or an error; error "" when it parses."""
    parser, argv = _parser(command.argv)
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            return parser, parser.parse_args(argv), ""  # type: ignore[attr-defined]
    except SystemExit as exc:
        if exc.code == 0:  # --help
            return parser, None, ""
        return parser, None, err.getvalue().strip().splitlines()[-1]


def _is_placeholder(path: str) -> bool:
    if path.startswith(("~", "$")) or "PLACEHOLDER" in path:
        return True
    return any(PLACEHOLDER_PART.fullmatch(part) for part in path.split("/"))


def _named_files(parser: object, argv: list[str]) -> tuple[list[str], list[str]]:
    """(read, written): the path-looking values of a command line."""
    actions = getattr(parser, "_option_string_actions", {})
    read, written = [], []
    previous = ""
    for token in argv:
        value = token
        if previous == "--set" and "=" in token:
            value = token.split("=", 1)[1]
        elif token.startswith("-"):
            option = token.split("=", 1)[0]
            if "=" in token and option in actions:
                value = token.split("=", 1)[1]
                previous = option
            else:
                previous = token
                continue
        if "://" not in value and ("/" in value or FILE_EXT.search(value)):
            action = actions.get(previous)
            (written if action is not None and action.dest in OUTPUT_DESTS else read).append(value)
        previous = token if not token.startswith("-") else previous
    return read, written


def _outputs(namespace: object | None) -> list[str]:
    return [str(getattr(namespace, d)) for d in OUTPUT_DESTS if getattr(namespace, d, None)]


def _covered(path: str, produced: list[str]) -> bool:
    want = Path(path.rstrip("/"))
    return any(want == Path(p) or Path(p) in want.parents for p in produced)


def test_the_docs_have_harness_commands() -> None:
    assert len(ALL) >= 10, [str(c) for c in ALL]  # the scan found them: README.md alone has dozens


@pytest.mark.parametrize("command", ALL, ids=str)
def test_a_documented_command_parses(command: Command) -> None:
    error = _parse(command)[2]
    assert not error, f"{command}\n  does not parse: {error}"


@pytest.mark.parametrize("doc", [d.name for d in DOCS])
def test_files_named_by_documented_commands_exist_or_come_from_an_earlier_command(doc: str) -> None:
    missing = []
    produced: dict[int, list[str]] = {}  # per block: what earlier commands wrote
    for command in (c for c in ALL if c.doc == doc):
        parser, namespace, error = _parse(command)
        if error:  # test_a_documented_command_parses reports it
            continue
        _, argv = _parser(command.argv)
        read, written = _named_files(parser, argv)
        block = produced.setdefault(command.block, [])
        for path in read:
            if not _is_placeholder(path) and not (ROOT / path).exists() and not _covered(path, block):
                missing.append(f"{command}\n  names {path!r}: not in the checkout, not written earlier in its block")
        block.extend(written + _outputs(namespace))
    assert not missing, "\n".join(missing)


def test_the_scanner_sees_through_continuations_operators_and_placeholders(tmp_path: Path) -> None:
    doc = tmp_path / "x.md"
    doc.write_text(
        "```bash\n. .venv/bin/activate && python -m harness --scenario Offline \\\n"
        "    --set dataset.path=missing.tsv   # a comment\n"
        "python -m harness report runs/<the run> --out reports/x\n```\n"
        "```text\npython -m harness (a diagram, not a command)\n```\n"
    )
    commands = harness_commands(doc)
    assert [c.argv for c in commands] == [
        ("--scenario", "Offline", "--set", "dataset.path=missing.tsv"),
        ("report", "runs/PLACEHOLDER", "--out", "reports/x"),
    ]
    assert [c.line for c in commands] == [2, 4]
    parser, argv = _parser(commands[1].argv)
    assert _named_files(parser, argv) == (["runs/PLACEHOLDER"], ["reports/x"])
    parser, argv = _parser(commands[0].argv)
    assert _named_files(parser, argv) == (["missing.tsv"], [])
    assert _is_placeholder("runs/RUN_DIR") and _is_placeholder("~/models/sdxl") and not _is_placeholder("prompts.toml")


LINK = re.compile(r"\[[^\]]*\]\(([^()\s]+)\)")
TOOL = re.compile(r"python -m tools\.([A-Za-z0-9_]+)")


def _without_code_blocks(text: str) -> str:
    return FENCE.sub("", text)


def _anchors(path: Path) -> set[str]:
    """GitHub's ids for the headings of a Markdown file: lower case, punctuation dropped, spaces as hyphens."""
    headings = re.findall(r"^#{1,6} +(.+?) *$", _without_code_blocks(path.read_text(encoding="utf-8")), re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize("doc", [*DOCS, ROOT / "benchmarks" / "results" / "README.md"], ids=lambda d: d.name)
def test_relative_links_go_to_files_and_headings_that_exist(doc: Path) -> None:
    broken = []
    for target in LINK.findall(_without_code_blocks(doc.read_text(encoding="utf-8"))):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        file, _, anchor = target.partition("#")
        path = (doc.parent / file).resolve() if file else doc
        if not path.exists():
            broken.append(f"{target}: no file {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
        elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
            broken.append(f"{target}: no heading #{anchor} in {path.name} (it has {sorted(_anchors(path))})")
    assert not broken, f"{doc.name}:\n  " + "\n  ".join(broken)


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: d.name)
def test_documented_tools_exist(doc: Path) -> None:
    missing = sorted(
        {n for n in TOOL.findall(doc.read_text(encoding="utf-8")) if not (ROOT / "tools" / f"{n}.py").is_file()}
    )
    assert not missing, f"{doc.name} names python -m tools.{missing[0]}: no tools/{missing[0]}.py"


def test_the_link_checker_knows_github_heading_ids(tmp_path: Path) -> None:
    doc = tmp_path / "x.md"
    doc.write_text(
        "# Top\n## Random weights (architecture-only runs)\n## Sweeps, cost and energy\n```bash\n# not a heading\n```\n"
    )
    assert _anchors(doc) == {"top", "random-weights-architecture-only-runs", "sweeps-cost-and-energy"}
