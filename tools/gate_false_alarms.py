"""How often `python -m harness gate` cries wolf, and whether it catches a real 10% slowdown.

    python -m tools.gate_false_alarms                      # the tiny model's default Offline run, 20 tries
    python -m tools.gate_false_alarms --backend fake --tries 20

Runs `python -m harness --scenario Offline` TRIES + 1 times under identical conditions, each in its own
process, and gates every run against the one before it (default thresholds: --max-slowdown 5%): each
exit 1 is a false alarm; from the 6th run on, also against `last:5` (the five identical runs before it,
pooled). With --backend fake (backend.latency_ms=20 per batch), it also runs TRIES runs
slowed by 10% (backend.latency_ms=22), each gated against the identical-condition run before it
(--allow-difference backend.latency_ms): each exit 0 is a missed slowdown. The runs go to --out (a
temporary folder by default) with their history.sqlite. The 1-minute load average is printed before and
after: on a shared machine, other work slows some runs for real, and the gate is right to notice that.
The gate confirms a failing check with up to N more runs of the candidate's configuration (`--confirm N`, as the
gate's own default; --confirm 0 judges each run alone); the candidates that needed confirming are counted.
Last line: `false_alarms=<n>/<tries> detected=<n>/<tries or n/a> false_alarms_vs_last_5=<n>/<m> confirmations=<n>`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.config import PROJECT_ROOT

LAST_N = 5
FAKE_SETS = ["loadgen.offline_expected_qps=400", "loadgen.min_duration_ms=2000"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.gate_false_alarms", description=__doc__.split("\n")[0])
    p.add_argument("--backend", choices=("tiny", "fake"), default="tiny", help="tiny: the default run (eager)")
    p.add_argument("--tries", type=int, default=20)
    p.add_argument("--max-slowdown", default="5%")
    p.add_argument("--confirm", type=int, default=2, help="the gate's --confirm (default 2, as the gate's)")
    p.add_argument("--out", type=Path, help="where the runs go. Default: a temporary folder")
    args = p.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="gate-false-alarms-"))
    out.mkdir(parents=True, exist_ok=True)
    base = ["--scenario", "Offline", "--no-progress", "--output-dir", str(out)]
    if args.backend == "fake":
        base += ["--backend", "fake", *[x for s in FAKE_SETS for x in ("--set", s)]]
    load_before = os.getloadavg()
    started = time.monotonic()
    print(f"runs in {out}; load average before: {load_before[0]:.2f} (1 min) on {os.cpu_count()} cores", flush=True)

    def one_run(*extra: str) -> Path:
        before = {d for d in out.iterdir() if d.is_dir()}
        proc = _harness(*base, *extra)
        made = sorted(d for d in out.iterdir() if d.is_dir() and d not in before)
        if proc.returncode != 0 or not made:
            raise SystemExit(f"error: a run failed (exit {proc.returncode}): {proc.stderr.strip()[-1000:]}")
        return made[-1]

    def gate(baseline: Path, candidate: Path, *extra: str) -> tuple[int, str]:
        proc = _harness(
            "gate", "--output-dir", str(out), "--baseline", str(baseline), "--candidate", str(candidate),
            "--max-slowdown", args.max_slowdown, "--confirm", str(args.confirm), *extra,
        )  # fmt: skip
        return _outcome(proc)

    def gate_last(candidate: Path) -> tuple[int, str]:
        proc = _harness(
            "gate", "--output-dir", str(out), "--baseline", f"last:{LAST_N}", "--candidate", str(candidate),
            "--max-slowdown", args.max_slowdown, "--confirm", str(args.confirm),
        )  # fmt: skip
        return _outcome(proc)

    confirmations = 0

    def _outcome(proc: subprocess.CompletedProcess[str]) -> tuple[int, str]:
        nonlocal confirmations
        if proc.returncode == 2:
            raise SystemExit(f"error: gate refused: {proc.stderr.strip()}")
        confirmations += proc.stderr.count("confirmation run 1/")
        line = next((ln for ln in proc.stdout.splitlines() if "slowdown" in ln), "")
        return proc.returncode, line

    records = []
    false_alarms = false_alarms_last = tries_last = 0
    detected = 0
    previous = one_run("--set", "backend.latency_ms=20") if args.backend == "fake" else one_run()
    same_runs = [previous]
    for i in range(1, args.tries + 1):
        current = one_run("--set", "backend.latency_ms=20") if args.backend == "fake" else one_run()
        code, line = gate(previous, current)
        false_alarms += code == 1
        record: dict[str, object] = {"try": i, "same": {"exit": code, "line": line}, "load_1min": os.getloadavg()[0]}
        print(f"try {i:2d} same conditions: exit {code}  {line}", flush=True)
        same_runs.append(current)
        if len(same_runs) > LAST_N:  # also against the LAST_N identical runs before it, pooled
            code_n, line_n = gate_last(current)
            tries_last += 1
            false_alarms_last += code_n == 1
            record["same_last_n"] = {"exit": code_n, "line": line_n}
            print(f"try {i:2d} vs last:{LAST_N}:       exit {code_n}  {line_n}", flush=True)
        if args.backend == "fake":
            slow = one_run("--set", "backend.latency_ms=22")
            code_s, line_s = gate(current, slow, "--allow-difference", "backend.latency_ms")
            detected += code_s == 1
            record["slowed_10pct"] = {"exit": code_s, "line": line_s}
            print(f"try {i:2d} 10% slower:      exit {code_s}  {line_s}", flush=True)
        records.append(record)
        previous = current
    load_after = os.getloadavg()
    summary = {
        "backend": args.backend,
        "tries": args.tries,
        "false_alarms": false_alarms,
        "detected": detected if args.backend == "fake" else None,
        f"false_alarms_vs_last_{LAST_N}": false_alarms_last,
        f"tries_vs_last_{LAST_N}": tries_last,
        "max_slowdown": args.max_slowdown,
        "confirm": args.confirm,
        "confirmation_runs": confirmations,
        "load_1min_before": load_before[0],
        "load_1min_after": load_after[0],
        "cpu_count": os.cpu_count(),
        "wall_s": round(time.monotonic() - started, 1),
        "tries_detail": records,
    }
    (out / "gate_false_alarms.json").write_text(json.dumps(summary, indent=2))
    print(f"load average after: {load_after[0]:.2f}; wall {summary['wall_s']} s; details: {out}/gate_false_alarms.json")
    shown = f"{detected}/{args.tries}" if args.backend == "fake" else "n/a"
    last = f"false_alarms_vs_last_{LAST_N}={false_alarms_last}/{tries_last}"
    print(f"false_alarms={false_alarms}/{args.tries} detected={shown} {last} confirmations={confirmations}")
    return 0


def _harness(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT))
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, env=env)


if __name__ == "__main__":
    sys.exit(main())
