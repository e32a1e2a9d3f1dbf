"""The endpoint section of a report: runs through the `http` backend only (summary.json's `endpoint`).

What the service looked like from its client: each sample's latency split into the server's queue, generate
and encode times (its Server-Timing header), the client's decode and the rest (network, transfer, HTTP);
the requests by status, retries and the peak in flight; time to first image from the client's first contact.
A run that sent the prompt only (backend.api=openai) is named in the section's alerts: not comparable with
MLPerf accuracy.
"""

from __future__ import annotations

from harness.report.collect import RunData
from harness.report.document import Section, Table

PARTS = ("e2e", "server_queue", "server_generate", "server_encode", "client_decode", "client_other")
OVERVIEW_COLUMNS = (
    "run",
    "url",
    "api",
    "response_format",
    "concurrency",
    "comparable_with_mlperf_accuracy",
    "server_backend",
    "requests",
    "errors",
    "responses_by_status",
    "retries",
    "max_in_flight",
    "time_to_first_image_s",
    "first_request_s",
)
SPLIT_COLUMNS = ("run", "part", "mean_ms", "p50_ms", "p99_ms", "max_ms", "share_of_mean")


def endpoint_section(runs: list[RunData]) -> Section | None:
    """The section, or None when no run went through an endpoint."""
    through = [r for r in runs if r.summary.endpoint is not None]
    if not through:
        return None
    section = Section("The endpoint (http backend)")
    section.notes.append(
        "each sample's client-side latency (e2e: request sent to image decoded) split into the server's queue, "
        "generate and encode times (its Server-Timing header), the client's decode, and the rest (client_other: "
        "network, transfer, HTTP, the client's event loop); time to first image: from the client's first "
        "contact (GET /health) to its first decoded image. Requests count every attempt, warm-up included."
    )
    overview, split = [], []
    for r in through:
        e = r.summary.endpoint
        assert e is not None
        if not e.comparable_with_mlperf_accuracy:
            section.alerts.append(f"{r.label}: {e.not_comparable_reason or 'not comparable with MLPerf accuracy'}")
        overview.append(
            {
                "run": r.label,
                "url": e.url,
                "api": e.api,
                "response_format": e.response_format,
                "concurrency": e.concurrency,
                "comparable_with_mlperf_accuracy": e.comparable_with_mlperf_accuracy,
                "server_backend": e.server.get("backend"),
                "requests": e.requests,
                "errors": e.errors,
                "responses_by_status": ", ".join(f"{k}: {v}" for k, v in e.responses_by_status.items()),
                "retries": e.retries,
                "max_in_flight": e.max_in_flight,
                "time_to_first_image_s": e.time_to_first_image_s,
                "first_request_s": e.first_request_s,
            }
        )
        e2e_mean = (e.latency_split_ms.get("e2e") or {}).get("mean")
        for part in PARTS:
            values = e.latency_split_ms.get(part)
            if not values:
                continue
            mean = values.get("mean")
            share = round(mean / e2e_mean, 4) if mean is not None and e2e_mean else None
            split.append(
                {
                    "run": r.label,
                    "part": part,
                    "mean_ms": mean,
                    "p50_ms": values.get("p50"),
                    "p99_ms": values.get("p99"),
                    "max_ms": values.get("max"),
                    "share_of_mean": share,
                }
            )
    section.tables.append(
        Table("endpoint", "The endpoint as its client saw it", OVERVIEW_COLUMNS, tuple(overview), transpose=True)
    )
    if split:
        section.tables.append(Table("endpoint_latency_split", "Per-sample latency, split", SPLIT_COLUMNS, tuple(split)))
    return section
