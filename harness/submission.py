"""An MLPerf Inference submission tree (the v6.0 layout) from harness run directories.

    <out>/<division>/<org>/systems/<system>.json
    <out>/<division>/<org>/src/README.md, src/t2i-harness.json        which revision of this tool made it
    <out>/<division>/<org>/results/<system>/stable-diffusion-xl/<Scenario>/
        README.md  user.conf  measurements.json
        performance/run_1/mlperf_log_summary.txt, mlperf_log_detail.txt
        accuracy/mlperf_log_summary.txt, mlperf_log_detail.txt, accuracy.txt (scores and hash=),
                 mlperf_log_accuracy.json (4 KiB head + 4 KiB tail when over 10 KiB, as the official
                 truncate_accuracy_log.py), images/<id>.png for the round's ids + captions.txt
        TEST01/verify_accuracy.txt, verify_performance.txt, performance/run_1/..., accuracy/...
        TEST04/verify_performance.txt, performance/run_1/...

The round's specifics (seeds, image ids) come from harness/mlperf_rules.py. Problems that make the
tree unusable (a missing run, an empty required field) are errors; problems the checker will report
(a development model, a short run) are warnings: a rehearsal tree is still worth building.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from accuracy.errors import AccuracyError
from accuracy.log_reader import AccuracyLogReader, log_sha256
from harness import mlperf_rules as rules
from harness.config import read_toml
from harness.errors import ConfigError, HarnessError
from harness.run_dir import write_json
from harness.system_desc import build_system_json, capture_machine, read_user_file

log = logging.getLogger(__name__)

KINDS = ("performance", "accuracy", *rules.COMPLIANCE_TESTS)


@dataclass(frozen=True)
class Run:
    path: Path
    kind: str  # performance | accuracy | TEST01 | TEST04
    scenario: str
    summary: dict[str, Any]
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
        summary = json.loads((p / "summary.json").read_text(encoding="utf-8"))
        manifest = json.loads((p / "manifest.json").read_text(encoding="utf-8"))
        compliance = json.loads((p / "compliance.json").read_text()) if (p / "compliance.json").is_file() else {}
    except json.JSONDecodeError as exc:
        raise ConfigError(f"run directory {str(p)!r}: unreadable JSON ({exc})") from exc
    config = read_toml(p / "config.toml")
    kind = compliance.get("test") or summary.get("mode")
    if kind not in KINDS:
        raise ConfigError(f"run directory {str(p)!r}: kind {kind!r} is not one of {', '.join(KINDS)}")
    if summary.get("status") != "ok":
        raise ConfigError(
            f"run directory {str(p)!r}: status {summary.get('status')!r}; only finished runs can be submitted"
        )
    scenario = str(summary.get("scenario"))
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

        (self.root / "systems").mkdir(parents=True, exist_ok=True)
        write_json(self.root / "systems" / f"{self.system}.json", system)
        self._write_src(runs)
        for scenario, slot in sorted(grouped.items()):
            self._write_scenario(results / scenario, scenario, slot, user["measurements"])
        return self.root

    # Parts of the tree ---------------------------------------------------------------------------
    def _write_src(self, runs: list[Run]) -> None:
        from harness import __version__
        from harness.manifest import git_revision

        src = self.root / "src"
        src.mkdir(parents=True, exist_ok=True)
        here = git_revision()
        recorded = {str(r.path): r.manifest.get("git", {}) for r in runs}
        commits = sorted({str(g.get("commit")) for g in recorded.values()})
        dirty = any(g.get("dirty") for g in recorded.values())
        write_json(src / "t2i-harness.json", {"version": __version__, "builder": here, "runs": recorded})
        lines = [
            "# Source",
            "",
            f"The results were produced with t2i-harness {__version__}, git commit(s) {', '.join(commits)}"
            + (" with uncommitted changes." if dirty else "."),
            f"This tree was assembled by commit {here.get('commit')}.",
            "Each run's manifest.json recorded the revision; t2i-harness.json lists them per run directory.",
        ]
        if dirty:
            self.warn("a run was made from a working tree with uncommitted changes (src/README.md says so)")
        (src / "README.md").write_text("\n".join(lines) + "\n", encoding="utf-8")

    def _write_scenario(self, dest: Path, scenario: str, slot: dict[str, Run], measurements: dict[str, Any]) -> None:
        perf, acc = slot["performance"], slot["accuracy"]
        if not perf.summary.get("result_valid"):
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
        model = perf.config.get("model", {})
        backend = perf.manifest.get("backend", {})
        weights = model.get("hub_id") or model.get("path") or (f"built in code ({model.get('builder')})")
        data = {
            "input_data_types": "text prompts, float32 latents",
            "retraining": "No",
            "starting_weights_filename": weights,
            "weight_data_types": str(backend.get("dtype", "")),
            "weight_transformations": "No",
            "backend": perf.config.get("run", {}).get("backend"),
            "device": backend.get("device"),
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
                verdict = r.summary.get("loadgen", {}).get("result_validity") or "-"
                status = ("PASS" if r.compliance.get("passed") else "FAIL") if r.compliance else r.summary["status"]
                lines.append(f"| {kind} | {r.path.name} | {verdict} | {status} |")
        perf = slot["performance"]
        config = (perf.path / "config.toml").read_text(encoding="utf-8")
        lines += ["", "## The performance run's resolved configuration", "", "```toml", config.rstrip(), "```", ""]
        return "\n".join(lines)


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
    from harness.prompts import load_prompts

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
    "qsl_rng_seed": ("qsl_rng_seed", "", 1),
    "sample_index_rng_seed": ("sample_index_rng_seed", "", 1),
    "schedule_rng_seed": ("schedule_rng_seed", "", 1),
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
