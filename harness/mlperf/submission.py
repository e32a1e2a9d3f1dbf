"""An MLPerf Inference submission tree (the v6.0 layout) from harness run directories.

    <out>/<division>/<org>/systems/<system>.json
    <out>/<division>/<org>/calibration.md                              what calibration the runs' precision took
    <out>/<division>/<org>/src/t2i-harness/   the harness's code: `git archive` of the runs' commit, or (runs
                                              from another or a dirty tree) the working tree, labelled as such
    <out>/<division>/<org>/src/README.md, src/t2i-harness.json        which revision made each run
    <out>/<division>/<org>/results/<system>/stable-diffusion-xl/<Scenario>/
        README.md  user.conf  measurements.json
        performance/run_1/mlperf_log_summary.txt, mlperf_log_detail.txt
        accuracy/mlperf_log_summary.txt, mlperf_log_detail.txt, accuracy.txt (scores and hash=),
                 mlperf_log_accuracy.json (4 KiB head + 4 KiB tail when over 10 KiB, as the official
                 truncate_accuracy_log.py), images/<id>.png for the round's ids + captions.txt
        TEST01/verify_accuracy.txt, verify_performance.txt, performance/run_1/..., accuracy/...
        TEST04/verify_performance.txt, performance/run_1/...

The round's specifics (seeds, image ids, scenario sets) come from harness/mlperf/rules.py. Problems that
make the tree unusable (a missing run, an empty required field) are errors; problems the checker will
report, and runs that are not the benchmark (a development model, the fake backend, random weights, a
short run: each run's summary.json submission_blockers), are warnings: a rehearsal tree is still worth
building, and says what it is.
"""

from __future__ import annotations

import io
import json
import logging
import shutil
import subprocess
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from accuracy.errors import AccuracyError
from accuracy.log_reader import AccuracyLogReader, log_sha256
from harness.config import read_toml
from harness.errors import ConfigError, HarnessError
from harness.mlperf import rules
from harness.mlperf.system_desc import build_system_json, capture_machine, read_user_file
from harness.run.run_dir import write_json
from harness.run.summary import RunSummary

log = logging.getLogger(__name__)

KINDS = ("performance", "accuracy", *rules.COMPLIANCE_TESTS)


@dataclass(frozen=True)
class Run:
    path: Path
    kind: str  # performance | accuracy | TEST01 | TEST04
    scenario: str
    summary: RunSummary
    config: dict[str, Any]
    manifest: dict[str, Any]
    compliance: dict[str, Any] = field(default_factory=dict)

    @property
    def model(self) -> str:
        return str(self.config.get("model", {}).get("name", ""))


def read_run(path: str | Path) -> Run:
    """A harness run directory: summary.json, config.toml, manifest.json (and compliance.json)."""
    p = Path(path).expanduser()
    missing = [n for n in ("summary.json", "config.toml", "manifest.json") if not (p / n).is_file()]
    if missing:
        what = "does not exist" if not p.is_dir() else f"has no {', '.join(missing)}"
        raise ConfigError(f"run directory {str(p)!r} {what}; give directories made by python -m harness")
    try:
        summary = RunSummary.read(p / "summary.json")
        manifest = json.loads((p / "manifest.json").read_text(encoding="utf-8"))
        compliance = json.loads((p / "compliance.json").read_text()) if (p / "compliance.json").is_file() else {}
    except json.JSONDecodeError as exc:
        raise ConfigError(f"run directory {str(p)!r}: unreadable JSON ({exc})") from exc
    config = read_toml(p / "config.toml")
    kind = compliance.get("test") or summary.mode
    if kind not in KINDS:
        raise ConfigError(f"run directory {str(p)!r}: kind {kind!r} is not one of {', '.join(KINDS)}")
    if summary.status != "ok":
        raise ConfigError(f"run directory {str(p)!r}: status {summary.status!r}; only finished runs can be submitted")
    scenario = summary.scenario
    if scenario not in rules.SCENARIOS:
        raise ConfigError(f"run directory {str(p)!r}: scenario {scenario!r}; allowed: {', '.join(rules.SCENARIOS)}")
    return Run(p, kind, scenario, summary, config, manifest, compliance)


def group_runs(runs: list[Run], benchmark: str) -> dict[str, dict[str, Run]]:
    """scenario -> kind -> run; exactly one performance and one accuracy run per scenario."""
    models = sorted({r.model for r in runs})
    if len(models) > 1:
        raise ConfigError(f"the runs are of different models ({', '.join(models)}); one submission, one model")
    for r in runs:
        name = r.config.get("model", {}).get("mlperf_name", "")
        if name and name != benchmark:
            raise ConfigError(f"run {str(r.path)!r} is of MLPerf benchmark {name!r}, not {benchmark!r}")
    grouped: dict[str, dict[str, Run]] = {}
    for r in runs:
        slot = grouped.setdefault(r.scenario, {})
        if r.kind in slot:
            raise ConfigError(
                f"two {r.kind} runs for {r.scenario}: {str(slot[r.kind].path)!r} and {str(r.path)!r}; give one"
            )
        slot[r.kind] = r
    for scenario, slot in sorted(grouped.items()):
        for kind in ("performance", "accuracy"):
            if kind not in slot:
                raise ConfigError(f"{scenario}: no {kind} run among the run directories; give one")
    return grouped


@dataclass
class Builder:
    out: Path
    division: str
    org: str
    system: str
    round: rules.Round
    benchmark: str = rules.BENCHMARK
    system_info: str | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def root(self) -> Path:
        return self.out / self.division / self.org

    def warn(self, message: str) -> None:
        log.warning("%s", message)
        self.warnings.append(message)

    def build(self, runs: list[Run]) -> Path:
        grouped = group_runs(runs, self.benchmark)
        user = read_user_file(self.system_info)
        first = grouped[sorted(grouped)[0]]["performance"]
        system = build_system_json(
            self.division, self.org, self.system, capture_machine(first.manifest), user["system"], self.system_info
        )
        results = self.root / "results" / self.system / self.benchmark
        if results.exists():
            raise ConfigError(f"{results} exists; give another --output or remove it")
        for r in runs:
            if r.config.get("model", {}).get("development_only") or not r.config.get("model", {}).get("mlperf_name"):
                self.warn(f"model {r.model!r} is not the MLPerf {self.benchmark} model: this tree is a rehearsal")
                break
        self._check_runs(runs)
        self._check_scenarios(sorted(grouped), str(system.get("system_type", "")))

        (self.root / "systems").mkdir(parents=True, exist_ok=True)
        write_json(self.root / "systems" / f"{self.system}.json", system)
        self._write_src(runs)
        self._write_calibration(runs)
        for scenario, slot in sorted(grouped.items()):
            self._write_scenario(results / scenario, scenario, slot, user["measurements"])
        return self.root

    # What is packed --------------------------------------------------------------------------------
    def _check_runs(self, runs: list[Run]) -> None:
        """Warn, per run, where it is not a run of the benchmark for this round (closed division)."""
        if self.division != "closed":
            return
        for r in runs:
            made_for = r.manifest.get("mlperf", {}).get("round")
            if made_for != self.round.name:
                self.warn(
                    f"{r.path.name} was made for round {made_for or 'none'} (mlperf.round), not {self.round.name}: "
                    "its LoadGen seeds are not this round's"
                )
            ran = r.manifest.get("ran", {})
            if ran and not ran.get("runs_model", True):
                self.warn(
                    f"{r.path.name}: backend {ran.get('backend')!r} ran no model; a closed tree of it is a rehearsal"
                )
            blockers = [b for b in r.summary.submission_blockers if "accuracy runs carry" not in b]
            if blockers:
                self.warn(f"{r.path.name} is not a closed-division benchmark run: {'; '.join(blockers)}")

    def _check_scenarios(self, scenarios: list[str], system_type: str) -> None:
        """The scenario set the official checker requires of this system type in this round (closed)."""
        if self.division != "closed":
            return
        need = rules.required_scenarios(self.round, system_type)
        if need is None:
            categories = [c for c, names in self.round.benchmarks.items() if self.benchmark in names]
            self.warn(
                f"{self.benchmark} is not a {system_type} benchmark in {self.round.name} (it is one of: "
                f"{', '.join(categories) or 'none'}); the official checker rejects this tree"
            )
            return
        missing, extra = sorted(set(need) - set(scenarios)), sorted(set(scenarios) - set(need))
        if missing or extra:
            self.warn(
                f"a {system_type} system submits {', '.join(need)} for {self.benchmark} in {self.round.name}; "
                f"this tree has {', '.join(scenarios)}"
                + (f" (missing {', '.join(missing)})" if missing else "")
                + (f" (not allowed: {', '.join(extra)})" if extra else "")
            )

    # Parts of the tree ---------------------------------------------------------------------------
    def _write_src(self, runs: list[Run]) -> None:
        """src/t2i-harness/: the code. The MLPerf rules ask for the code that produced the results; the
        official checkers only test that src/ exists (measurements_checks.py directory_exist_check)."""
        from harness import __version__
        from harness.run.manifest import git_revision

        src = self.root / "src"
        src.mkdir(parents=True, exist_ok=True)
        here = git_revision()
        recorded = {str(r.path): r.manifest.get("git", {}) for r in runs}
        commits = sorted({str(g.get("commit")) for g in recorded.values()})
        dirty = any(g.get("dirty") for g in recorded.values())
        code = src / "t2i-harness"
        exact = len(commits) == 1 and not dirty and _git_archive(commits[0], code)
        if exact:
            origin = f"`git archive {commits[0]}`: the commit every run recorded, unmodified."
        else:
            _copy_working_tree(code)
            origin = (
                f"a copy of the working tree at assembly time (commit {here.get('commit')}"
                + (", with uncommitted changes" if here.get("dirty") else "")
                + f"). The runs recorded commit(s) {', '.join(commits)}"
                + (" with uncommitted changes" if dirty else "")
                + ": this is not exactly the code that ran."
            )
            self.warn(f"src/t2i-harness is not exactly the code of the runs: {origin}")
        write_json(
            src / "t2i-harness.json", {"version": __version__, "builder": here, "runs": recorded, "exact": exact}
        )
        lines = [
            "# Source",
            "",
            f"`t2i-harness/` holds the code of t2i-harness {__version__} that produced these results: {origin}",
            "Files whose names start with '.' and the measured results under benchmarks/results/ are left out.",
            "Each run's manifest.json recorded its revision; t2i-harness.json lists them per run directory.",
        ]
        (src / "README.md").write_text("\n".join(lines) + "\n", encoding="utf-8")

    def _write_calibration(self, runs: list[Run]) -> None:
        """calibration.md, which the older official checker requires of closed and network divisions
        (submission_checker_old.py: "<division>/<submitter>/calibration.md" or documentation/calibration.md)."""
        precisions = sorted({_what_ran(r).weight_data_types for r in runs if r.kind == "performance"})
        quantized = [p for p in precisions if p not in ("float32", "float16", "bfloat16", "none", "unknown")]
        lines = [
            "# Calibration",
            "",
            f"The performance runs ran in: {', '.join(precisions)}.",
            "t2i-harness performs no post-training quantization and no calibration: the weights run in the",
            "precision they were loaded in, cast as the backend's dtype option says.",
        ]
        if quantized:
            lines += [
                "",
                f"The precision(s) {', '.join(quantized)} need calibration that this tool did not do: describe",
                "here the calibration data (from the MLPerf calibration set only) and the method used to quantize.",
            ]
            self.warn(f"calibration.md: describe how the {', '.join(quantized)} weights were calibrated")
        (self.root / "calibration.md").write_text("\n".join(lines) + "\n", encoding="utf-8")

    def _write_scenario(self, dest: Path, scenario: str, slot: dict[str, Run], measurements: dict[str, Any]) -> None:
        perf, acc = slot["performance"], slot["accuracy"]
        if not perf.summary.result_valid:
            self.warn(f"{scenario}: the performance run's LoadGen result is not VALID ({perf.path.name})")
        _copy_logs(perf.path, dest / "performance" / "run_1")
        self._write_accuracy(dest / "accuracy", acc)
        for test in rules.COMPLIANCE_TESTS:
            if test in slot:
                self._write_compliance(dest / test, slot[test], perf)
            else:
                self.warn(f"{scenario}: no {test} run among the run directories (python -m harness compliance)")
        write_json(dest / "measurements.json", self._measurements(perf, measurements))
        (dest / "user.conf").write_text(user_conf(perf, self.benchmark), encoding="utf-8")
        (dest / "README.md").write_text(self._readme(scenario, slot), encoding="utf-8")

    def _write_accuracy(self, dest: Path, acc: Run) -> None:
        _copy_logs(acc.path, dest)
        source_log = acc.path / "mlperf_log_accuracy.json"
        if not source_log.is_file():
            raise ConfigError(f"accuracy run {str(acc.path)!r} has no mlperf_log_accuracy.json")
        digest = log_sha256(source_log)
        truncate_accuracy_log(source_log, dest / "mlperf_log_accuracy.json")
        (dest / "accuracy.txt").write_text(self._accuracy_txt(acc, digest), encoding="utf-8")
        self._write_images(dest / "images", acc, source_log)

    def _accuracy_txt(self, acc: Run, digest: str) -> str:
        source = acc.path / "accuracy.txt"
        lines: list[str] = []
        if source.is_file():
            for line in source.read_text(encoding="utf-8").splitlines():
                if line.startswith("hash="):
                    if line != f"hash={digest}":
                        self.warn(f"{source}: {line[:20]}... is not the log's hash; the log changed after scoring")
                    continue
                lines.append(line)
        if not any("Accuracy Results" in line for line in lines):
            self.warn(
                f"accuracy run {acc.path.name} has no CLIP/FID scores (accuracy.txt); "
                "the checker will fail the accuracy window"
            )
        return "\n".join([*lines, f"hash={digest}"]) + "\n"

    def _write_images(self, dest: Path, acc: Run, source_log: Path) -> None:
        """<id>.png of the round's ids, and captions.txt (`<id>  <caption>`, as the reference writes it)."""
        ids = list(self.round.image_ids)
        if not ids:  # the round asks for no images (v6.1)
            return
        found: dict[int, Path] = {}
        for i in ids:  # the accuracy step may have saved them already
            png = acc.path / "images" / f"{i}.png"
            if png.is_file():
                found[i] = png
        dest.mkdir(parents=True, exist_ok=True)
        for i, png in found.items():
            shutil.copyfile(png, dest / f"{i}.png")
        wanted = [i for i in ids if i not in found]
        if wanted:
            from PIL import Image

            model = acc.config.get("model", {})
            try:
                for sample in AccuracyLogReader(source_log, int(model["height"]), int(model["width"])):
                    if sample.qsl_idx in wanted:
                        Image.fromarray(sample.image).save(dest / f"{sample.qsl_idx}.png")
                        found[sample.qsl_idx] = dest / f"{sample.qsl_idx}.png"
            except AccuracyError as exc:
                raise ConfigError(str(exc)) from exc
        missing = [i for i in ids if i not in found]
        if missing:
            self.warn(
                f"accuracy run {acc.path.name} has no samples {', '.join(map(str, missing))} "
                f"(the {self.round.name} images): images/ lacks them"
            )
        captions = _captions(acc)
        present = [i for i in ids if i in found and i < len(captions)]
        if present:
            text = "".join(f"{i}  {captions[i]}\n" for i in present)
            (dest / "captions.txt").write_text(text, encoding="utf-8")

    def _write_compliance(self, dest: Path, run: Run, perf: Run) -> None:
        test = run.kind
        if not run.compliance.get("passed"):
            self.warn(f"{test} did not pass ({run.path.name}); its verify files say why")
        verified_against = run.compliance.get("performance_run")
        if verified_against and Path(verified_against).resolve() != perf.path.resolve():
            self.warn(f"{test} was verified against {verified_against}, not the submitted run {perf.path}")
        dest.mkdir(parents=True, exist_ok=True)
        names = ["verify_performance.txt"] + (["verify_accuracy.txt"] if test == "TEST01" else [])
        for name in names:
            if (run.path / name).is_file():
                shutil.copyfile(run.path / name, dest / name)
            else:
                self.warn(f"{test} run {run.path.name} has no {name}")
        _copy_logs(run.path, dest / "performance" / "run_1")
        if test == "TEST01":
            acc_dest = dest / "accuracy"
            acc_dest.mkdir(parents=True, exist_ok=True)
            source_log = run.path / "mlperf_log_accuracy.json"
            if source_log.is_file():
                digest = log_sha256(source_log)
                truncate_accuracy_log(source_log, acc_dest / "mlperf_log_accuracy.json")
                (acc_dest / "accuracy.txt").write_text(f"hash={digest}\n", encoding="utf-8")
            for name in ("baseline_accuracy.txt", "compliance_accuracy.txt"):
                if (run.path / "accuracy" / name).is_file():
                    shutil.copyfile(run.path / "accuracy" / name, acc_dest / name)

    def _measurements(self, perf: Run, user: dict[str, Any]) -> dict[str, Any]:
        """What the performance run ran (its manifest), not what the model config names."""
        ran = _what_ran(perf)
        weights = ran.weights
        hub_id = perf.config.get("model", {}).get("hub_id")
        if ran.runs_model and hub_id and not weights.startswith(("random", "built in code", "unknown")):
            weights = f"{hub_id} (loaded from {weights})"
        data = {
            "input_data_types": "text prompts, float32 latents",
            "retraining": "No",
            "starting_weights_filename": weights,
            "weight_data_types": ran.weight_data_types,
            "weight_transformations": "No",
            "backend": ran.backend,
            "device": perf.manifest.get("backend", {}).get("device"),
            "resolution": f"{ran.width}x{ran.height}",
            "steps": ran.steps,
        }
        data.update(user)
        empty = [k for k in rules.MEASUREMENTS_REQUIRED_FIELDS if data.get(k) in ("", None)]
        if empty:
            raise ConfigError(
                f"measurements.json: required fields are empty: {', '.join(empty)}; set them in the [measurements] "
                "table of --system-info FILE"
            )
        return data

    def _readme(self, scenario: str, slot: dict[str, Run]) -> str:
        from harness import __version__

        lines = [
            f"# {self.benchmark} {scenario} on {self.system}",
            "",
            f"Assembled by t2i-harness {__version__} (`python -m harness submission`) from these run directories:",
            "",
            "| what | run directory | LoadGen result | status |",
            "|---|---|---|---|",
        ]
        for kind in KINDS:
            if kind in slot:
                r = slot[kind]
                verdict = r.summary.loadgen.result_validity or "-"
                status = ("PASS" if r.compliance.get("passed") else "FAIL") if r.compliance else r.summary.status
                lines.append(f"| {kind} | {r.path.name} | {verdict} | {status} |")
        perf = slot["performance"]
        config = (perf.path / "config.toml").read_text(encoding="utf-8")
        lines += ["", "## The performance run's resolved configuration", "", "```toml", config.rstrip(), "```", ""]
        return "\n".join(lines)


def _what_ran(run: Run) -> Any:
    """The run's manifest["ran"]; for runs recorded before it existed, worked out from config and manifest."""
    from harness.run.manifest import WhatRan, what_ran

    recorded = run.manifest.get("ran")
    if recorded:
        return WhatRan(**recorded)
    config = {
        "run": run.config.get("run", {}),
        "model": {"height": 0, "width": 0, "steps": 0, **run.config.get("model", {})},
    }
    return what_ran(config, run.manifest.get("backend", {}), str(run.manifest.get("model", {}).get("path") or ""))


def _code_file(rel: str) -> bool:
    """A file of the code to ship: no dot-names or spaces (the older checker rejects both), no results."""
    parts = rel.split("/")
    return not any(p.startswith(".") or " " in p for p in parts) and not rel.startswith("benchmarks/results/")


def _git_archive(commit: str, dest: Path) -> bool:
    """`git archive` of `commit` into `dest`; False where this checkout does not have that commit."""
    from harness.config import PROJECT_ROOT

    try:
        tar = subprocess.run(
            ["git", "archive", "--format=tar", commit], cwd=PROJECT_ROOT, capture_output=True, timeout=120, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        members = [m for m in archive.getmembers() if m.isfile() and _code_file(m.name)]
        archive.extractall(dest, members=members, filter="data")
    return True


def _copy_working_tree(dest: Path) -> None:
    """The files git tracks, as they are in the working tree now."""
    from harness.config import PROJECT_ROOT

    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z"], cwd=PROJECT_ROOT, capture_output=True, timeout=60, check=True
        ).stdout.decode()
    except (OSError, subprocess.SubprocessError) as exc:
        raise ConfigError(f"cannot list the harness's files with git to copy them into src/ ({exc})") from exc
    for rel in filter(None, listed.split("\0")):
        source = PROJECT_ROOT / rel
        if _code_file(rel) and source.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, dest / rel)


def _copy_logs(src: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for name in rules.PERFORMANCE_FILES:
        if not (src / name).is_file():
            raise ConfigError(f"run directory {str(src)!r} has no {name}")
        shutil.copyfile(src / name, dest / name)


def truncate_accuracy_log(src: Path, dst: Path) -> bool:
    """Copy `src`, keeping only its first and last 4 KiB when it is over 10 KiB (the official
    truncate_accuracy_log.py); True when it was truncated."""
    size = src.stat().st_size
    if size <= rules.MAX_ACCURACY_LOG_BYTES:
        shutil.copyfile(src, dst)
        return False
    n = rules.TRUNCATE_VIEWABLE_BYTES
    with src.open("rb") as f:
        head = f.read(n)
        f.seek(size - n)
        tail = f.read(n)
    dst.write_bytes(head + rules.TRUNCATION_MARKER.encode() + tail)
    return True


def _captions(run: Run) -> list[str]:
    from harness.data.prompts import load_prompts

    source = str(run.manifest.get("prompts", {}).get("source") or run.config.get("dataset", {}).get("path", ""))
    try:
        return list(load_prompts(source).texts)
    except (HarnessError, OSError) as exc:  # a moved prompt file: no captions.txt, and say why
        log.warning("captions of %s: cannot load the prompts %r (%s)", run.path.name, source, exc)
        return []


# user.conf ---------------------------------------------------------------------------------------
# TestSettings attribute -> (user.conf key, scenario it applies to or "" for all, factor)
_CONF_KEYS: dict[str, tuple[str, str, float]] = {
    "min_duration_ms": ("min_duration", "", 1),
    "max_duration_ms": ("max_duration", "", 1),
    "min_query_count": ("min_query_count", "", 1),
    "max_query_count": ("max_query_count", "", 1),
    "performance_sample_count_override": ("performance_sample_count_override", "", 1),
    "offline_expected_qps": ("target_qps", "Offline", 1),
    "server_target_qps": ("target_qps", "Server", 1),
    "server_target_latency_ns": ("target_latency", "Server", 1e-6),
    "server_target_latency_percentile": ("target_latency_percentile", "Server", 100),
    "single_stream_expected_latency_ns": ("target_latency", "SingleStream", 1e-6),
    "single_stream_target_latency_percentile": ("target_latency_percentile", "SingleStream", 100),
}
_SCENARIO_TARGET = {
    "Offline": "offline_expected_qps",
    "Server": "server_target_qps",
    "SingleStream": "single_stream_expected_latency_ns",
}


def user_conf(perf: Run, benchmark: str) -> str:
    """The LoadGen settings this run set beyond mlperf.conf, as user.conf lines: the user's user.conf
    as given, then every setting of the TOML layers and --set loadgen.* (with LoadGen's final value)."""
    cfg = perf.config
    scenario = perf.scenario
    lines = [f"# LoadGen settings of the performance run {perf.path.name}, beyond mlperf.conf."]
    # No seed lines: LoadGen reads seeds only from its built-in mlperf.conf (FromConfig, conf_type 0);
    # the harness set the round's seeds itself (mlperf.round), and the detail log records them.
    made_for = perf.manifest.get("mlperf", {}).get("round")
    lines.append(
        f"# Seeds: those of round {made_for}, set by t2i-harness (--set mlperf.round={made_for})."
        if made_for
        else "# Seeds: LoadGen's built-in mlperf.conf (the run named no round)."
    )
    given = str(cfg.get("user_conf") or "")
    if given and Path(given).is_file():
        lines += [f"# from {given}:", Path(given).read_text(encoding="utf-8").rstrip()]
    resolved = cfg.get("loadgen_resolved", {})
    keys = [*cfg.get("loadgen", {}), *cfg.get("loadgen_overrides", {}), _SCENARIO_TARGET[scenario]]
    written = set()
    for attr in keys:
        if attr not in _CONF_KEYS or attr in written or attr not in resolved:
            continue
        key, only, factor = _CONF_KEYS[attr]
        if only and only != scenario:
            continue
        written.add(attr)
        value = resolved[attr] * factor if factor != 1 else resolved[attr]
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        lines.append(f"{benchmark}.{scenario}.{key} = {value}")
    return "\n".join(lines) + "\n"
