"""`python -m harness compare`: the same benchmark on several backends, side by side.

    python -m harness compare --backends diffusers-eager,torch-compile,onnxruntime --scenario Offline

Each backend runs in its own process (`python -m harness ...`, so one backend's threads, caches and
compiled code cannot touch another's), first a performance run, then an accuracy-mode run of a few
samples whose logged images are compared with the reference backend's. All runs get the same
model, scenario, prompts, latents and `--set` overrides; `--backend-set NAME:KEY=VALUE` adds an
override for one backend only (e.g. `torch-compile:backend.mode=max-autotune`). One backend can run
under several configurations by giving each a label, `LABEL=BACKEND` in `--backends`, and naming the
label in `--backend-set`, `--reference` and the tables (e.g. `--backends
diffusers-eager,compiled=torch-compile,int8=torch-compile --backend-set int8:backend.quantize=int8_dynamic`);
each row's run directory records the backend that ran. The compare run
directory gets compare.md, compare.json, compare.png, the runs themselves under runs/, and each
run's output under logs/. Exit code 0 when every run succeeded, 1 when one failed (the report says
which), 2 on bad input.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any

from backends.registry import BACKENDS
from harness.commands._child import run_child
from harness.commands._shared import fail
from harness.config import SCENARIOS, available_models
from harness.run.run_dir import write_json
from harness.run.summary import RunSummary, verdict_of
from harness.studies.compare import build_report, make_row, markdown, read_manifest, run_parity, write_chart

log = logging.getLogger("harness.studies.compare")

DEFAULT_BACKENDS = "diffusers-eager,torch-compile,onnxruntime"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m harness compare",
        description="Run several backends on the same model, scenario, prompts and latents, each in its own "
        "process, and write compare.md, compare.json and compare.png: throughput, latency, speedup over the "
        "reference, setup (compile / export / build) time, peak memory, and image parity against the reference.",
        epilog="example: python -m harness compare --backends diffusers-eager,torch-compile,onnxruntime "
        "--scenario Offline --set sut.batch_size=8",
    )
    p.add_argument(
        "--backends",
        default=DEFAULT_BACKENDS,
        help=f"comma-separated backends, from: {', '.join(sorted(BACKENDS))}; LABEL=BACKEND runs a backend under a "
        f"label of its own (one backend, several configurations, with --backend-set LABEL:...). "
        f"Default: {DEFAULT_BACKENDS}",
    )
    p.add_argument("--reference", default="diffusers-eager", help="the backend the others are measured against")
    p.add_argument("--scenario", choices=SCENARIOS, default="Offline", help="LoadGen scenario. Default: Offline")
    p.add_argument("--model", default="tiny", help=f"model config: {', '.join(available_models())}. Default: tiny")
    p.add_argument("--model-path", metavar="DIR", help="local diffusers pipeline folder, as for python -m harness")
    p.add_argument("--config", metavar="FILE.toml", help="a TOML layer for every run, as for python -m harness")
    p.add_argument("--user-conf", metavar="FILE", help="a LoadGen user.conf for every run")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE", help="for every run")
    p.add_argument(
        "--backend-set",
        dest="backend_sets",
        action="append",
        default=[],
        metavar="NAME:KEY=VALUE",
        help="an override for one backend's runs only, e.g. torch-compile:backend.regional=true",
    )
    p.add_argument(
        "--parity-samples",
        type=int,
        default=8,
        metavar="N",
        help="samples in each backend's accuracy-mode run for image parity; 0 skips parity. Default: 8",
    )
    p.add_argument(
        "--output-dir", metavar="DIR", default="runs", help="where the compare directory goes. Default: runs/"
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=1,
        metavar="N",
        help="performance runs per backend, taken round-robin; the median one is reported (all are in "
        "compare.json). Default: 1",
    )
    p.add_argument("--timeout-s", type=float, default=3600.0, help="limit for each run. Default: 3600")
    return p


def _parse(argv: list[str]) -> tuple[argparse.Namespace, dict[str, str], dict[str, list[str]]] | str:
    """(args, label -> backend, label -> its --set overrides), or the bad-input message."""
    args = build_parser().parse_args(argv)
    items = [b.strip() for b in args.backends.split(",") if b.strip()]
    pairs = [
        (label.strip(), name.strip()) if sep else (item, item)
        for item in items
        for label, sep, name in [item.partition("=")]
    ]
    unknown = [name for _, name in pairs if name not in BACKENDS]
    if unknown:
        return f"unknown backend {unknown[0]!r}; choose from: {', '.join(sorted(BACKENDS))}"
    bad_label = [label for label, _ in pairs if not label or any(c in label for c in "/:, ")]
    if bad_label:
        return f"--backends label {bad_label[0]!r} must be a plain name (no '/', ':', ',' or spaces)"
    labels = [label for label, _ in pairs]
    if len(set(labels)) != len(labels) or len(labels) < 2:
        return f"--backends needs at least two different backends or labels, got {args.backends!r}"
    backends = dict(pairs)
    if args.reference not in backends:
        return f"--reference {args.reference!r} is not in --backends ({', '.join(backends)})"
    if args.model not in available_models():
        return f"unknown model {args.model!r}; choose one of: {', '.join(available_models())}"
    if args.rounds < 1:
        return f"--rounds must be >= 1, got {args.rounds}"
    if args.parity_samples < 0:
        return f"--parity-samples must be >= 0, got {args.parity_samples}"
    per_backend: dict[str, list[str]] = {b: [] for b in backends}
    for item in args.backend_sets:
        name, sep, override = item.partition(":")
        if not sep or name not in per_backend or "=" not in override:
            return f"--backend-set expects NAME:KEY=VALUE with NAME one of {', '.join(backends)}, got {item!r}"
        per_backend[name].append(override)
    return args, backends, per_backend


def main(argv: list[str] | None = None) -> int:
    parsed = _parse(list(sys.argv[1:] if argv is None else argv))
    if isinstance(parsed, str):
        return fail(parsed)
    args, label_backend, per_backend = parsed
    backends = list(label_backend)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False

    out = (
        Path(args.output_dir).expanduser().resolve()
        / f"{time.strftime('%Y%m%d-%H%M%S')}-compare-{args.model}-{args.scenario}"
    )
    out.mkdir(parents=True, exist_ok=False)
    (out / "runs").mkdir()
    (out / "logs").mkdir()
    log.info("compare: %s on %s, %s -> %s", ", ".join(backends), args.model, args.scenario, out)

    common = ["--model", args.model, "--scenario", args.scenario]
    for flag, value in (("--model-path", args.model_path), ("--config", args.config), ("--user-conf", args.user_conf)):
        if value:
            common += [flag, value]
    for s in args.sets:
        common += ["--set", s]

    # Performance runs, round-robin over the backends for each round, so that a machine whose load
    # drifts (a shared CI box) weighs on every backend alike; each backend's median round is reported.
    perf: dict[str, list[tuple[Path | None, int, str | None]]] = {b: [] for b in backends}
    extras = {b: [a for s in per_backend[b] for a in ("--set", s)] for b in backends}
    for _ in range(args.rounds):
        for backend in backends:
            perf[backend].append(
                _run(out, backend, label_backend[backend], "performance", [*common, *extras[backend]], args.timeout_s)
            )

    rows: list[dict[str, Any]] = []
    accuracy_dirs: dict[str, Path | None] = {}
    for backend in backends:
        perf_dir, code, error = _median_round(perf[backend])
        acc_dir = None
        if args.parity_samples and code == 0:
            n = str(args.parity_samples)
            # Only the logged images matter here: no CLIP / FID scoring of these few samples.
            acc_args = [
                *common,
                *extras[backend],
                "--set",
                f"dataset.count={n}",
                "--set",
                f"accuracy.sample_images={n}",
            ]
            acc_args += ["--set", "accuracy.score=false"]
            acc_dir, acc_code, acc_error = _run(
                out, backend, label_backend[backend], "accuracy", acc_args, args.timeout_s
            )
            if acc_code != 0:
                log.error("compare: the accuracy run of %s failed: %s", backend, acc_error)
                acc_dir = None
        accuracy_dirs[backend] = acc_dir
        row = make_row(backend, perf_dir, code, error, acc_dir)
        row["rounds"] = [
            {
                "run_dir": str(d) if d else None,
                "exit_code": c,
                "samples_per_second": _samples_per_second(d),
            }
            for d, c, _ in perf[backend]
        ]
        rows.append(row)

    ref_dir = accuracy_dirs.get(args.reference)
    for row in rows:
        other = accuracy_dirs.get(row["backend"])
        if row["backend"] == args.reference or not args.parity_samples:
            continue
        if ref_dir is None or other is None:
            row["parity_error"] = "the reference's or this backend's accuracy run is missing"
            continue
        try:
            row["parity"] = run_parity(ref_dir, other).to_dict()
        except (OSError, ValueError) as exc:
            row["parity_error"] = str(exc)

    first = next((r["run_dir"] for r in rows if r["run_dir"]), None)
    host = read_manifest(Path(first)).get("host") if first else None
    report = build_report(
        rows,
        reference=args.reference,
        model=args.model,
        scenario=args.scenario,
        command=["python", "-m", "harness", "compare", *(argv if argv is not None else sys.argv[1:])],
        sets=list(args.sets),
        host=host,
    )
    write_json(out / "compare.json", report)
    text = markdown(report)
    (out / "compare.md").write_text(text, encoding="utf-8")
    write_chart(report, out / "compare.png")
    print(text)
    from harness.report import write_report

    md, html = write_report([out], out)
    print(f"report: {md}, {html}")
    print(f"compare directory: {out}")
    failed = [r["backend"] for r in rows if r["status"] != "ok"]
    if failed:
        print(f"error: {len(failed)} backend run(s) failed: {', '.join(failed)}; see {out / 'logs'}", file=sys.stderr)
        return 1
    return 0


def _samples_per_second(run_dir: Path | None) -> float | None:
    summary = RunSummary.read_if_present(run_dir / "summary.json" if run_dir else None)
    return summary.samples_per_second if summary is not None else None


def _median_round(results: list[tuple[Path | None, int, str | None]]) -> tuple[Path | None, int, str | None]:
    """The round with the median throughput; the first failed round if any failed."""
    failed = [r for r in results if r[1] != 0]
    if failed:
        return failed[0]
    ranked = sorted(results, key=lambda r: _samples_per_second(r[0]) or 0.0)
    return ranked[(len(ranked) - 1) // 2]


def _run(
    out: Path, backend: str, backend_name: str, mode: str, args: list[str], timeout_s: float
) -> tuple[Path | None, int, str | None]:
    """One `python -m harness` run of `backend_name` under the label `backend`; (its run directory, exit
    code, last error line)."""
    runs = out / "runs"
    cmd = ["--backend", backend_name, "--mode", mode, "--output-dir", str(runs), "--no-progress", *args]
    log_path = out / "logs" / f"{backend}-{mode}.log"
    log.info("compare: %s %s ...", backend, mode)
    start = time.perf_counter()
    # without a terminal, a line every few seconds
    child = run_child(
        cmd, output_dir=runs, heartbeat=f"compare: {backend} {mode}", log_path=log_path, timeout_s=timeout_s
    )
    code, run_dir = child.returncode, child.run_dir
    error = None
    if code != 0:
        lines = [ln for ln in log_path.read_text(encoding="utf-8").splitlines() if ln.startswith("error:")]
        error = lines[-1].removeprefix("error: ") if lines else f"exit code {code} (see {log_path})"
        if child.timed_out:
            error = f"timed out after {timeout_s:.0f} s"
    summary = child.summary()
    sps = summary.samples_per_second if summary is not None else None
    log.info(
        "compare: %s %s %s in %.1f s%s",
        backend,
        mode,
        "done" if code == 0 else f"FAILED ({error})",
        time.perf_counter() - start,
        f": {sps:.3f} samples/s, LoadGen {verdict_of(summary).label()}" if (mode == "performance" and sps) else "",
    )
    return run_dir, code, error
