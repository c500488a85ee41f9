"""Prometheus metrics of the service (``GET /metrics``), in a registry of their own per service instance."""

from __future__ import annotations

from typing import Any

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.35, 0.5, 0.75, 1.0, 2.5, 5.0)
BATCH_ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768)


class ServingMetrics:
    """Requests, latency, batch sizes, queue depth, log and shadow drops, model swaps; per arm where it
    applies."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry(auto_describe=True)
        prefix = "driftloop_serving_"
        kwargs: dict[str, Any] = {"registry": self.registry}
        self.requests = Counter(
            prefix + "requests",
            "Requests answered, by endpoint, arm and HTTP status",
            ["endpoint", "arm", "status"],
            **kwargs,
        )
        self.latency = Histogram(
            prefix + "request_latency_seconds",
            "Time from request to response, by arm",
            ["arm"],
            buckets=LATENCY_BUCKETS_S,
            **kwargs,
        )
        self.rows = Counter(
            prefix + "rows", "Rows scored, by arm and role (primary or shadow)", ["arm", "role"], **kwargs
        )
        self.batch_rows = Histogram(
            prefix + "batch_rows",
            "Rows per predict call",
            ["arm", "role"],
            buckets=BATCH_ROW_BUCKETS,
            **kwargs,
        )
        self.predict_seconds = Histogram(
            prefix + "predict_seconds",
            "Duration of one worker round trip",
            buckets=LATENCY_BUCKETS_S,
            **kwargs,
        )
        self.model_seconds = Histogram(
            prefix + "model_seconds",
            "Time the model itself took in one predict call",
            ["arm"],
            buckets=LATENCY_BUCKETS_S,
            **kwargs,
        )
        self.queue_depth = Gauge(prefix + "queue_depth", "Requests waiting for a worker", **kwargs)
        self.shadow_queue_rows = Gauge(
            prefix + "shadow_queue_rows", "Shadow rows waiting for a free worker", **kwargs
        )
        self.rejected = Counter(
            prefix + "rejected", "Requests refused with 503, by reason", ["reason"], **kwargs
        )
        self.isolated = Counter(
            prefix + "isolated_failures", "Requests the model failed on alone (422)", **kwargs
        )
        self.shadow_dropped_rows = Counter(
            prefix + "shadow_dropped_rows", "Shadow rows shed under load or failed", **kwargs
        )
        self.log_written_rows = Counter(prefix + "log_written_rows", "Prediction-log rows written", **kwargs)
        self.log_dropped_rows = Counter(
            prefix + "log_dropped_rows", "Prediction-log rows dropped (queue full or write error)", **kwargs
        )
        self.log_queue_rows = Gauge(
            prefix + "log_queue_rows", "Prediction-log rows waiting for the writer", **kwargs
        )
        self.labels_received = Counter(prefix + "labels", "Labels accepted by POST /labels", **kwargs)
        self.model_version = Gauge(
            prefix + "model_version", "Version served behind each alias (0: none)", ["alias"], **kwargs
        )
        self.swaps = Counter(
            prefix + "model_swaps", "Versions swapped in (or out) per alias", ["alias"], **kwargs
        )
        self.load_failures = Counter(
            prefix + "model_load_failures", "Versions that failed to load", ["alias"], **kwargs
        )
        self.worker_restarts = Counter(
            prefix + "worker_restarts", "Inference workers replaced after dying", **kwargs
        )

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST
