"""Offline checks of an MLPerf submission tree for stable-diffusion-xl, as the official submission
checker (mlcommons/inference tools/submission/submission_checker) makes them, rule by rule.

Each failure names its rule, the file and the reason. The rules:

- required-files: systems/<system>.json, src/, README.md, user.conf, measurements.json, the
  performance/run_1 and accuracy/ logs; no unknown benchmark or scenario folder; closed division:
  calibration.md (or documentation/calibration.md), which the older official checker requires.
- scenarios: closed division: the scenario folders are exactly the set the round requires of the
  system's system_type (edge: SingleStream and Offline; datacenter,edge: those and Server), and SDXL
  is a benchmark of that category in the round (not of datacenter from v6.0 on).
- system: systems/<system>.json has the required fields, values where they must have one, a valid
  status and system_type, submitter and division equal to the folders, no network mode in closed.
- measurements: measurements.json has the required fields, with values.
- loadgen-errors: no LoadGen error in any mlperf_log_detail.txt.
- result-validity: LoadGen's result is VALID. Not a rule of the official checker (it trusts the
  settings rules); a tree with an INVALID run is not worth submitting.
- scenario: the log's effective_scenario is the folder's.
- seeds: the three RNG seeds are the round's; the message says whose seeds the logged ones are and
  which LoadGen wheels embed the round's.
- min-duration: effective_min_duration_ms >= 600000.
- min-query-count: Offline (closed) effective_samples_per_query >= 5000; scenarios without early
  stopping effective_min_query_count >= their minimum.
- performance-sample-count: effective_performance_sample_count >= 5000.
- early-stopping: SingleStream and Server: early_stopping_met.
- latency: Server: effective_target_latency_ns <= 20 s.
- accuracy-sample-count: the accuracy run covered the dataset: effective_accuracy_sample_count (or,
  in older logs, qsl_reported_total_count) == 5000.
- accuracy-window: accuracy.txt has CLIP_SCORE and FID_SCORE, inside the window (a score the official
  pattern cannot read, such as a negative one, fails and is named with its value).
- accuracy-log: mlperf_log_accuracy.json is at most 10 KiB; accuracy.txt has a hash= line, a
  SHA-256, equal to the log's own where the log was not truncated.
- images: accuracy/images/<id>.png for the round's ten ids, and captions.txt (v6.1 asks for none).
- compliance: closed division: TEST01 and TEST04 folders; verify_performance.txt with TEST PASS;
  TEST01 verify_accuracy.txt with TEST PASS or the CLIP/FID fallback files within 1 % / 2 %; their
  performance/run_1 holds exactly the two logs, on which the performance rules above run too.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import ConfigError
from harness.loadgen.logs import DetailLog, read_detail_log
from harness.mlperf import rules
from harness.mlperf.compliance import has_pass_line


@dataclass(frozen=True)
class Failure:
    rule: str
    path: Path
    reason: str

    def line(self, root: Path) -> str:
        try:
            where = self.path.relative_to(root)
        except ValueError:
            where = self.path
        return f"FAIL [{self.rule}] {where}: {self.reason}"


@dataclass
class Checker:
    root: Path
    round: rules.Round
    failures: list[Failure] = field(default_factory=list)
    results_checked: list[Path] = field(default_factory=list)

    def fail(self, rule: str, path: Path, reason: str) -> None:
        self.failures.append(Failure(rule, path, reason))

    def check(self) -> list[Failure]:
        if not self.root.is_dir():
            raise ConfigError(f"submission folder {str(self.root)!r} does not exist")
        divisions = [self.root / d for d in rules.DIVISIONS if (self.root / d).is_dir()]
        if not divisions:
            raise ConfigError(
                f"{str(self.root)!r} has no {' or '.join(d + '/' for d in rules.DIVISIONS)} folder: "
                "give the top of a submission tree"
            )
        for division in divisions:
            for org in _dirs(division):
                self._check_org(division.name, org)
        return self.failures

    # Organization: systems, src, results ---------------------------------------------------------
    def _check_org(self, division: str, org: Path) -> None:
        src = org / "src"
        if not src.is_dir() or not any(src.iterdir()):
            self.fail("required-files", src, "missing or empty: the source of the implementation")
        # submission_checker_old.py (main loop, "Check for calibration documentation"): closed and
        # network divisions need calibration.md at the submitter's root or in documentation/.
        if division != "open" and not any(
            (org / p).is_file() for p in ("calibration.md", "documentation/calibration.md")
        ):
            self.fail("required-files", org / "calibration.md", "missing (or documentation/calibration.md)")
        results = org / "results"
        if not results.is_dir() or not _dirs(results):
            self.fail("required-files", results, "no results/<system>/ folder")
            return
        for system_dir in _dirs(results):
            system_type = self._check_system(division, org, system_dir.name)
            for bench in _dirs(system_dir):
                if bench.name != rules.BENCHMARK:
                    self.fail(
                        "required-files", bench, f"benchmark {bench.name!r}: this checker knows {rules.BENCHMARK}"
                    )
                    continue
                if division == "closed" and system_type in rules.SYSTEM_TYPES:
                    self._check_scenario_set(bench, system_type)
                for scenario_dir in _dirs(bench):
                    if scenario_dir.name not in rules.SCENARIOS:
                        allowed = ", ".join(rules.SCENARIOS)
                        self.fail("required-files", scenario_dir, f"scenario {scenario_dir.name!r}; allowed: {allowed}")
                        continue
                    self.results_checked.append(scenario_dir)
                    self._check_scenario(division, scenario_dir)

    def _check_scenario_set(self, bench: Path, system_type: str) -> None:
        """The scenarios of one benchmark against the round's set for the system type, as the official
        loader.py SubmissionLoader.check_scenarios does (closed and network divisions): every required
        scenario present, none outside required + optional (SDXL has no optional ones in v6.0 / v6.1).
        Where SDXL has no entry for the type, Config.get_required returns None and the official tool
        crashes; this says why instead."""
        need = rules.required_scenarios(self.round, system_type)
        if need is None:
            categories = [c for c, names in self.round.benchmarks.items() if bench.name in names]
            self.fail(
                "scenarios",
                bench,
                f"{bench.name} is not a {system_type} benchmark in {self.round.name} "
                f"(it is {' and '.join(categories)}); "
                f"{self.round.name} datacenter benchmarks: {', '.join(self.round.benchmarks['datacenter'])}",
            )
            return
        present = [d.name for d in _dirs(bench)]
        missing = [s for s in need if s not in present]
        unknown = [s for s in present if s not in need and s in rules.SCENARIOS]
        if missing:
            self.fail(
                "scenarios", bench, f"missing {', '.join(missing)}: a {system_type} system submits {', '.join(need)}"
            )
        if unknown:
            self.fail(
                "scenarios",
                bench,
                f"{', '.join(unknown)} is not a scenario of {bench.name} for a {system_type} system in "
                f"{self.round.name} (allowed: {', '.join(need)})",
            )

    def _check_system(self, division: str, org: Path, system: str) -> str:
        """Check systems/<system>.json; its system_type ("" where unreadable)."""
        path = org / "systems" / f"{system}.json"
        if not path.is_file():
            self.fail("required-files", path, f"missing: the description of system {system!r}")
            return ""
        try:
            desc = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            self.fail("system", path, f"not valid JSON ({exc})")
            return ""
        missing = [k for k in rules.SYSTEM_REQUIRED_FIELDS if k not in desc]
        if missing:
            self.fail("system", path, f"required fields missing: {', '.join(missing)}")
        empty = [k for k in rules.SYSTEM_MEANINGFUL_FIELDS if k in desc and not desc[k]]
        if empty:
            self.fail("system", path, f"required fields without a value: {', '.join(empty)}")
        status = str(desc.get("status", "")).lower()
        if status not in rules.SYSTEM_STATUSES:
            self.fail("system", path, f"status {desc.get('status')!r}; allowed: {', '.join(rules.SYSTEM_STATUSES)}")
        if desc.get("system_type") not in rules.SYSTEM_TYPES:
            allowed = ", ".join(rules.SYSTEM_TYPES)
            self.fail("system", path, f"system_type {desc.get('system_type')!r}; allowed: {allowed}")
        if str(desc.get("submitter", "")).lower() != org.name.lower():
            self.fail("system", path, f"submitter {desc.get('submitter')!r}, but the folder is {org.name!r}")
        if str(desc.get("division", "")).lower() != division:
            self.fail("system", path, f"division {desc.get('division')!r}, but the folder is {division!r}")
        if division == "closed" and str(desc.get("is_network", "false")).lower() == "true":
            self.fail("system", path, "is_network is true: network-mode systems belong in the network division")
        return str(desc.get("system_type", ""))

    # One result: results/<system>/<benchmark>/<Scenario> -----------------------------------------
    def _check_scenario(self, division: str, d: Path) -> None:
        scenario = d.name
        for name in rules.SCENARIO_FILES:
            if not (d / name).is_file() or (d / name).stat().st_size == 0:
                self.fail("required-files", d / name, "missing or empty")
        if (d / "measurements.json").is_file():
            self._check_measurements(d / "measurements.json")
        perf = d / "performance" / "run_1"
        if self._files_present(perf, rules.PERFORMANCE_FILES):
            self._check_performance(perf / "mlperf_log_detail.txt", scenario, division)
        acc = d / "accuracy"
        if self._files_present(acc, rules.ACCURACY_FILES):
            self._check_accuracy(acc)
        if acc.is_dir():
            self._check_images(acc / "images")
        if division == "closed":
            for test in rules.COMPLIANCE_TESTS:
                self._check_compliance(d / test, test, scenario, division)

    def _files_present(self, folder: Path, names: tuple[str, ...]) -> bool:
        missing = [n for n in names if not (folder / n).is_file()]
        if missing:
            self.fail("required-files", folder, f"missing {', '.join(missing)}")
        return not missing

    def _check_measurements(self, path: Path) -> None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            self.fail("measurements", path, f"not valid JSON ({exc})")
            return
        missing = [k for k in rules.MEASUREMENTS_REQUIRED_FIELDS if k not in data]
        empty = [k for k in rules.MEASUREMENTS_REQUIRED_FIELDS if k in data and not data[k]]
        if missing:
            self.fail("measurements", path, f"required fields missing: {', '.join(missing)}")
        if empty:
            self.fail("measurements", path, f"required fields without a value: {', '.join(empty)}")

    # Performance -------------------------------------------------------------------------------------
    def _check_performance(self, path: Path, scenario: str, division: str) -> None:
        log = read_detail_log(path)
        if not log.values:
            self.fail("required-files", path, "no :::MLLOG lines: not a LoadGen detail log")
            return
        self._check_errors(log, path)
        if log.get("effective_scenario") != scenario:
            self.fail(
                "scenario", path, f"effective_scenario is {log.get('effective_scenario')!r}, the folder {scenario!r}"
            )
        if log.get("result_validity") != "VALID":
            reason = log.get("result_invalid_reason") or "see mlperf_log_summary.txt"
            self.fail("result-validity", path, f"result_validity is {log.get('result_validity')!r}: {reason}")
        self._check_seeds(log, path)
        value = _int(log, "effective_performance_sample_count")
        if value is None or value < rules.PERFORMANCE_SAMPLE_COUNT:
            need = rules.PERFORMANCE_SAMPLE_COUNT
            self.fail("performance-sample-count", path, f"effective_performance_sample_count = {value}; need >= {need}")
        value = _int(log, "effective_min_duration_ms")
        if value is None or value < rules.MIN_DURATION_MS:
            need = rules.MIN_DURATION_MS
            self.fail("min-duration", path, f"effective_min_duration_ms = {value}; the rules need >= {need} (600 s)")
        if scenario not in rules.EARLY_STOPPING_SCENARIOS:
            value, need = _int(log, "effective_min_query_count"), rules.MIN_QUERY_COUNT[scenario]
            if value is None or value < need:
                self.fail("min-query-count", path, f"effective_min_query_count = {value}; need >= {need}")
        if scenario == "Offline" and division == "closed":
            value, need = _int(log, "effective_samples_per_query"), rules.OFFLINE_MIN_SAMPLES_PER_QUERY
            if value is None or value < need:
                self.fail("min-query-count", path, f"effective_samples_per_query = {value}; Offline needs >= {need}")
        if scenario in rules.EARLY_STOPPING_SCENARIOS and log.get("early_stopping_met") is not True:
            detail = " ".join(str(log.get("early_stopping_result", "")).split())
            self.fail("early-stopping", path, f"early_stopping_met is {log.get('early_stopping_met')}: {detail}")
        limit = rules.LATENCY_CONSTRAINT_NS.get(scenario)
        if limit is not None:
            value = _int(log, "effective_target_latency_ns")
            if value is None or value > limit:
                self.fail("latency", path, f"effective_target_latency_ns = {value}; {scenario} needs <= {limit}")

    def _check_errors(self, log: DetailLog, path: Path) -> None:
        if log.errors:
            shown = "; ".join(log.errors[:2]) + (" ..." if len(log.errors) > 2 else "")
            self.fail("loadgen-errors", path, f"LoadGen logged {len(log.errors)} error(s): {shown}")

    def _check_seeds(self, log: DetailLog, path: Path) -> None:
        seeds = tuple(_int(log, f"effective_{k}") for k in rules.SEED_KEYS)
        if seeds == self.round.seeds:
            return
        logged = ", ".join(f"{k} {v}" for k, v in zip(rules.SEED_KEYS, seeds, strict=True))
        known = rules.round_of_seeds(seeds)  # type: ignore[arg-type]
        whose = f"the {known} seeds" if known else "no round's seeds"
        version = log.get("loadgen_version", "unknown")
        self.fail(
            "seeds",
            path,
            f"{logged} are {whose} (LoadGen {version}); round {self.round.name} needs "
            f"{', '.join(map(str, self.round.seeds))} (make the runs with --set mlperf.round={self.round.name}; "
            f"{self.round.loadgen_versions} embed them; a user.conf cannot set seeds)",
        )

    # Accuracy ----------------------------------------------------------------------------------------
    def _check_accuracy(self, acc: Path) -> None:
        detail = acc / "mlperf_log_detail.txt"
        log = read_detail_log(detail)
        self._check_errors(log, detail)
        key = "effective_accuracy_sample_count" if "effective_accuracy_sample_count" in log.values else None
        key = key or "qsl_reported_total_count"
        count = _int(log, key)
        if count != rules.DATASET_SIZE:
            self.fail(
                "accuracy-sample-count",
                detail,
                f"{key} = {count}; the accuracy run must cover all {rules.DATASET_SIZE}",
            )
        txt = acc / "accuracy.txt"
        text = txt.read_text(encoding="utf-8", errors="replace")
        for metric, (low, high) in rules.ACCURACY_WINDOW.items():
            value = _metric(text, metric)
            present = _metric(text, metric, rules.ANY_SCORE_PATTERN.format(metric=metric))
            if value is None and present is not None:
                self.fail(
                    "accuracy-window",
                    txt,
                    f"{metric} = {present} is outside {low} .. {high} (and the official pattern, which has no "
                    "minus sign or exponent, does not read it)",
                )
            elif value is None:
                self.fail("accuracy-window", txt, f'no {metric} (expected a line like "Accuracy Results: {{...}}")')
            elif not low <= value <= high:
                self.fail("accuracy-window", txt, f"{metric} = {value} is outside {low} .. {high}")
        self._check_accuracy_log(acc / "mlperf_log_accuracy.json", txt, text)

    def _check_accuracy_log(self, log_path: Path, txt: Path, text: str) -> None:
        hashes = [m.group(1) for line in text.splitlines() if (m := re.match(rules.HASH_PATTERN, line))]
        size = log_path.stat().st_size
        if size > rules.MAX_ACCURACY_LOG_BYTES:
            self.fail("accuracy-log", log_path, f"{size} bytes: not truncated (at most {rules.MAX_ACCURACY_LOG_BYTES})")
        if not hashes:
            self.fail("accuracy-log", txt, "no hash= line: the SHA-256 of the full mlperf_log_accuracy.json")
            return
        digest = hashes[-1]
        if not re.fullmatch(r"[0-9a-f]{64}", digest):
            self.fail("accuracy-log", txt, f"hash={digest[:20]}... is not a SHA-256 (64 hex digits)")
            return
        data = log_path.read_bytes()
        if rules.TRUNCATION_MARKER.encode() not in data and hashlib.sha256(data).hexdigest() != digest:
            self.fail(
                "accuracy-log", txt, "hash= is not the SHA-256 of mlperf_log_accuracy.json (which is not truncated)"
            )

    def _check_images(self, images: Path) -> None:
        if not self.round.image_ids:  # accuracy_check.py extra_files_check: no entry for the round, no check
            return
        if not images.is_dir():
            self.fail("images", images, f"missing: the {self.round.name} images {_ids(self.round)} and captions.txt")
            return
        stems = {p.name.split(".")[0] for p in images.iterdir() if p.is_file()}
        missing = [str(i) for i in self.round.image_ids if str(i) not in stems]
        if missing:
            self.fail("images", images, f"missing {', '.join(f'{i}.png' for i in missing)} ({self.round.name} ids)")
        captions = images / "captions.txt"
        if not captions.is_file() or captions.stat().st_size == 0:
            self.fail("images", captions, "missing or empty: the captions of the images")

    # Compliance --------------------------------------------------------------------------------------
    def _check_compliance(self, d: Path, test: str, scenario: str, division: str) -> None:
        if not d.is_dir():
            self.fail("compliance", d, f"missing: the {test} results (python -m harness compliance --test {test})")
            return
        perf_txt = d / "verify_performance.txt"
        if not perf_txt.is_file():
            self.fail("compliance", perf_txt, "missing")
        elif not any("TEST PASS" in line for line in perf_txt.read_text(encoding="utf-8").splitlines()):
            self.fail("compliance", perf_txt, f"{test} performance check did not pass (no TEST PASS)")
        run = d / "performance" / "run_1"
        if not run.is_dir():
            self.fail("compliance", run, "missing")
        else:
            diff = _files_diff(run, rules.PERFORMANCE_FILES, optional=("mlperf_log_accuracy.json",))
            if diff:
                self.fail("compliance", run, f"file list mismatch: {diff}")
            if (run / "mlperf_log_detail.txt").is_file():
                self._check_performance(run / "mlperf_log_detail.txt", scenario, division)
        if test == "TEST01":
            self._check_test01_accuracy(d)

    def _check_test01_accuracy(self, d: Path) -> None:
        txt = d / "verify_accuracy.txt"
        if not txt.is_file():
            self.fail("compliance", txt, "missing")
            return
        if has_pass_line(txt.read_text(encoding="utf-8")):
            return
        acc = d / "accuracy"
        if not acc.is_dir():
            self.fail("compliance", txt, "TEST01 accuracy failed (no TEST PASS) and there is no accuracy/ folder")
            return
        diff = _files_diff(acc, rules.TEST01_FALLBACK_FILES)
        if diff:
            self.fail("compliance", acc, f"TEST01 accuracy failed (no TEST PASS); its fallback files: {diff}")
            return
        base = (acc / "baseline_accuracy.txt").read_text(encoding="utf-8")
        comp = (acc / "compliance_accuracy.txt").read_text(encoding="utf-8")
        for metric, allowed in rules.TEST01_DELTA_PERCENT.items():
            b, c = _metric(base, metric), _metric(comp, metric)
            if not b or not c:
                any_pattern = rules.ANY_SCORE_PATTERN.format(metric=metric)
                found = {
                    name: _metric(text, metric, any_pattern)
                    for name, text in (("baseline", base), ("compliance", comp))
                }
                unread = [f"{name} {v}" for name, v in found.items() if v is not None]
                reason = (
                    f"{metric} that the official pattern cannot read ({', '.join(unread)})"
                    if unread and all(v is not None for v in found.values())
                    else f"no {metric} in " + " or ".join(n for n, v in found.items() if v is None)
                )
                self.fail("compliance", acc, f"TEST01 fallback: {reason}")
                continue
            delta = abs(1 - b / c) * 100
            if delta > allowed:
                self.fail(
                    "compliance", acc, f"TEST01 fallback: {metric} differs by {delta:.3f}% (at most {allowed:g}%)"
                )


def _dirs(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir()) if path.is_dir() else []


def _int(log: DetailLog, key: str) -> int | None:
    value = log.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return int(value)


def _metric(text: str, metric: str, pattern: str = "") -> float | None:
    """The first match of the official pattern for `metric` (or of `pattern`) in accuracy.txt."""
    pattern = pattern or rules.ACCURACY_PATTERN[metric]
    for line in text.splitlines():
        m = re.match(pattern, line)
        if m:
            try:
                return float(m.group(1))
            except ValueError:
                return None
    return None


def _ids(r: rules.Round) -> str:
    return ", ".join(map(str, r.image_ids))


def _files_diff(folder: Path, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> str:
    """Files missing or extra, "" when none (the official files_diff: a symmetric difference, minus
    the optional ones)."""
    present = {p.name for p in folder.iterdir() if p.is_file()}
    ignored = set(optional) | set(rules.IGNORED_FILES)
    missing, extra = sorted(set(required) - present), sorted(present - set(required) - ignored)
    parts = ([f"missing {', '.join(missing)}"] if missing else []) + (
        [f"unexpected {', '.join(extra)}"] if extra else []
    )
    return "; ".join(parts)


def check_tree(root: str | Path, round_name: str = "v6.0") -> tuple[list[Failure], int]:
    """All failures of the tree at `root`, and how many results (scenario folders) were checked."""
    checker = Checker(Path(root), rules.ROUNDS[round_name])
    failures = checker.check()
    return failures, len(checker.results_checked)


def summarize(failures: list[Failure]) -> dict[str, Any]:
    by_rule: dict[str, int] = {}
    for f in failures:
        by_rule[f.rule] = by_rule.get(f.rule, 0) + 1
    return by_rule
