"""Failures and invalid results of every input, found once and called out at the top of the report."""

from __future__ import annotations

from typing import Any

from harness.report.collect import DirData, Input, RunData
from harness.report.document import Table

PROBLEM_COLUMNS = ["run", "status", "problem"]
STANDIN = (
    "CLIP / FID from STAND-IN scorer files (seeded random weights, synthetic FID statistics): deterministic but "
    "meaningless absolute numbers; compare runs with each other only"
)
RANDOM_WEIGHTS = "random weights (model.weights = random): an architecture-only performance run, its images are noise"


def _run_problems(r: RunData) -> list[dict[str, Any]]:
    s = r.summary
    status = s.status
    out = []
    if status != "ok":
        failure = s.failure
        what = s.error or (failure.error if failure is not None else None) or "no error recorded"
        where: list[str] = []
        if failure is not None and not s.error and failure.backend:  # summary.error already names them
            where.append(f"backend {failure.backend!r}")
            if failure.worker:
                where.append(f"worker {failure.worker}")
            if failure.sample_indices:
                where.append(f"samples {list(failure.sample_indices[:8])}")
        out.append(f"run {str(status).upper()}: {what}" + (f" ({', '.join(where)})" if where else ""))
    loadgen = s.loadgen
    if loadgen.result_validity == "INVALID":
        out.append(f"LoadGen result INVALID: {(loadgen.invalid_reason or 'no reason given').strip()}")
    if loadgen.errors:
        out.append(f"LoadGen errors: {'; '.join(map(str, loadgen.errors))}")
    if s.weights == "random":
        out.append(RANDOM_WEIGHTS)
    verdict = r.accuracy.get("verdict")
    if verdict in ("FAIL", "ERROR"):
        reasons = r.accuracy.get("reasons") or [r.accuracy.get("error")]
        out.append(f"accuracy {verdict}: {'; '.join(str(x) for x in reasons if x)}")
    return [{"run": r.label, "status": status, "problem": p} for p in out]


def _invalid(row: dict[str, Any]) -> str:
    return f"LoadGen result INVALID: {row.get('invalid_reason') or 'no reason recorded'}"


def _point(row: dict[str, Any], keys: tuple[str, ...]) -> str:
    return ", ".join(f"{k}={row[k]}" for k in keys if row.get(k) is not None)


def _dir_problems(d: DirData) -> list[dict[str, Any]]:
    out = []
    if d.data.get("weights") == "random":
        out.append(("ok", RANDOM_WEIGHTS))
    if d.kind == "sweep":
        keyed: list[tuple[str, Any, tuple[str, ...]]] = [
            ("sweep point", r, ("resolution", "steps", "batch_size", "scenario")) for r in d.data.get("rows", [])
        ]
        keyed += [("batch ramp point", r, ("resolution", "steps", "batch_size")) for r in d.data.get("ramp", [])]
        keyed += [("largest-batch search", r, ("resolution", "steps")) for r in d.data.get("fit", [])]
        for what, row, keys in keyed:
            if row.get("status") != "ok":
                detail = f": {row['error']}" if row.get("error") else ""
                out.append((row.get("status"), f"{what} {_point(row, keys)} {row.get('status')}{detail}"))
            elif row.get("loadgen_validity") == "INVALID":
                out.append((row.get("status"), f"{what} {_point(row, keys)}: {_invalid(row)}"))
        standin = [q for q in d.data.get("quality", []) if q.get("standin")]
        if standin:
            points = "; ".join(_point(q, ("resolution", "steps")) for q in standin)
            out.append(("ok", f"{STANDIN} ({points})"))
    elif d.kind == "scale":
        for row in d.data.get("rows", []):
            point = _point(row, ("scenario", "workers"))
            if row.get("status") != "ok":
                out.append((row.get("status"), f"scale point {point} {row.get('status')}"))
            elif row.get("loadgen_validity") == "INVALID" or row.get("result_valid") is False:
                out.append((row.get("status"), f"scale point {point}: {_invalid(row)}"))
    elif d.kind == "compare":
        for row in d.data.get("results", []):
            if row.get("status") != "ok":
                out.append((row.get("status"), f"backend {row.get('backend')} {row.get('status')}: {row.get('error')}"))
            elif row.get("loadgen_result") == "INVALID":
                out.append((row.get("status"), f"backend {row.get('backend')}: {_invalid(row)}"))
        if d.data.get("same_inputs") is False:
            out.append(("ok", "the compared runs did not see the same prompts and latents"))
    return [{"run": d.label, "status": status, "problem": p} for status, p in out]


def problems(inputs: list[Input]) -> Table:
    rows: list[dict[str, Any]] = []
    for item in inputs:
        rows += _run_problems(item) if isinstance(item, RunData) else _dir_problems(item)
    return Table(
        "problems",
        "Failures and invalid results",
        tuple(PROBLEM_COLUMNS),
        tuple(rows),
        note="a failed run, a LoadGen INVALID result (with LoadGen's reason, early stopping's included), LoadGen "
        "errors, an accuracy FAIL or ERROR, a failed or INVALID sweep / scale / compare point, stand-in scorers.",
    )
