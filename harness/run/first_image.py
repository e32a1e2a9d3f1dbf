"""Time to first image, cold and warm, for summary["time_to_first_image_s"].

- cold: from the start of this process (its creation time, as the OS records it: interpreter start,
  imports, model load, warm-up and LoadGen's start all count) to the first image handed back to LoadGen.
  A command that makes several runs in one process (compliance: the accuracy and performance runs,
  then the test) marks each run's start with `mark_run_start()`: a later run's cold time counts from
  its own start (its model load and warm-up, not the runs before it), and says so. A later run with no
  mark gets no cold figure rather than one that counts the earlier runs;
- warm: one batch-1 image in the already-loaded process, timed after the LoadGen run, off its clock
  (a backend with fixed batch shapes pads it up to its smallest warmed batch, as the SUT would).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from backends.base import PromptBatch
from harness.workers.in_process import Worker

log = logging.getLogger(__name__)

# Runs of this process so far (time_to_first_image calls) and the start of the current run, if marked.
_runs_done = 0
_run_start_unix_s: float | None = None


def mark_run_start() -> None:
    """Called by a command that starts a run in a process that may already have made one."""
    global _run_start_unix_s
    _run_start_unix_s = time.time()


def process_start_unix_s() -> float | None:
    """When this process started (seconds since the epoch), or None where psutil cannot tell."""
    try:
        import psutil

        return float(psutil.Process().create_time())
    except (ImportError, OSError):
        return None


def warm_latency_s(worker: Worker, batch: PromptBatch) -> float | None:
    """Wall time of one call on a loaded worker (the backend synchronizes its device before returning);
    None, with a warning, when that call fails: the run's own results stand without it."""
    start = time.perf_counter_ns()
    try:
        worker.run(batch)
    except Exception as exc:  # after the run: a failure here must not lose the run's summary
        log.warning("time to first image: the warm batch-1 call failed (%s: %s)", type(exc).__name__, exc)
        return None
    return (time.perf_counter_ns() - start) / 1e9


def time_to_first_image(first_image_unix_s: float | None, warm_s: float | None) -> dict[str, Any]:
    global _runs_done, _run_start_unix_s
    earlier, mark = _runs_done, _run_start_unix_s
    _runs_done, _run_start_unix_s = _runs_done + 1, None
    if earlier == 0:
        started = process_start_unix_s()
        cold_from = "process start (psutil create_time) to the first image handed back to LoadGen"
    elif mark is not None:
        started = mark
        cold_from = (
            f"start of this run to the first image handed back to LoadGen (run {earlier + 1} of this process: "
            "its model load and warm-up count; interpreter start and imports were paid by an earlier run)"
        )
    else:
        started = None
        cold_from = f"not measured: run {earlier + 1} of this process, whose start would count the earlier runs"
    cold = None if first_image_unix_s is None or started is None else first_image_unix_s - started
    return {
        "cold": round(cold, 4) if cold is not None else None,
        "warm": round(warm_s, 4) if warm_s is not None else None,
        "cold_from": cold_from,
        "warm_from": "one batch-1 image on the loaded worker, after the run",
    }
