"""The server's Prometheus metrics, in a registry of its own per app (never the process-global one, so
that two apps in one process, as in the tests, count apart)."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 128)


class ServeMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "harness_serve_requests",
            "Requests answered, by endpoint and HTTP status",
            ["endpoint", "status"],
            registry=r,
        )
        self.errors = Counter("harness_serve_errors", "Error responses, by error type", ["type"], registry=r)
        self.images = Counter("harness_serve_images", "Images generated and returned", registry=r)
        self.queued = Gauge("harness_serve_queued_images", "Images waiting for a batch", registry=r)
        self.batch_size = Histogram(
            "harness_serve_batch_size", "Images per backend batch", buckets=BATCH_BUCKETS, registry=r
        )
        self.queue_seconds = Histogram(
            "harness_serve_queue_seconds",
            "Per image: arrival to batch start",
            buckets=SECONDS_BUCKETS,
            registry=r,
        )
        self.generate_seconds = Histogram(
            "harness_serve_generate_seconds", "Per backend batch: generation time", buckets=SECONDS_BUCKETS, registry=r
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
