"""The serving service: models, workers, batcher, routing and prediction log, behind the HTTP layer of
``app``.

:class:`ServingService` is what ``driftloop serve`` runs: on start it builds the input schema (contract + the
champion's signature), starts one inference worker per core, loads and warms ``champion`` and ``challenger``,
opens the prediction log and starts the registry poll; on stop it refuses new requests, drains the queue,
writes the log out and stops the workers.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import logging
import os
import re
import time
import uuid
from typing import Any

from driftloop.core import bus
from driftloop.core.config import DatasetConfig
from driftloop.core.settings import Settings
from driftloop.core.state import StatePaths
from driftloop.serving.online.batcher import Batcher
from driftloop.serving.online.jobs import CallOutputs, Job, JobResult
from driftloop.serving.online.labels import label_file_bytes, parse_labels, write_label_file
from driftloop.serving.online.metrics import ServingMetrics
from driftloop.serving.online.models import ModelSet, resolve_served, signature_types
from driftloop.serving.online.prediction_log import ERROR, PRIMARY, SHADOW, PredictionLogWriter, log_uri
from driftloop.serving.online.prediction_log_store import LogEntry
from driftloop.serving.online.router import Routing
from driftloop.serving.online.validation import InputSchema, ParsedRequest, RequestError
from driftloop.serving.online.workers import WorkerPool

LOG = logging.getLogger(__name__)
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
RECENT_LABEL_FILES = 10_000


def worker_count(settings: Settings) -> tuple[int, str]:
    """``(workers, kind)``: ``DRIFTLOOP_SERVE_WORKERS`` processes, 0 (default) for one per core, -1 for one
    thread in this process (tests). With A/B routing two workers score the two arms side by side: on two cores
    that beat one worker by a third in ``bench/bench_serving.py`` although each call got slower."""
    if settings.serve_workers < 0:
        return 1, "thread"
    return (settings.serve_workers or os.cpu_count() or 1), "process"


def request_id_from(header: str | None) -> str:
    """The client's ``X-Request-Id`` when it is a safe token, else a new random id."""
    if header and _REQUEST_ID.fullmatch(header):
        return header
    return uuid.uuid4().hex


class ServingService:
    """Everything behind the endpoints (see the module docstring)."""

    def __init__(
        self,
        cfg: DatasetConfig,
        settings: Settings,
        worker_kind: str | None = None,
        workers: int | None = None,
    ) -> None:
        from driftloop.data.contract import load_contract

        self.cfg = cfg
        self.settings = settings
        self.contract = load_contract(cfg)
        self.metrics = ServingMetrics()
        self.routing = Routing(cfg.serving.challenger_share, cfg.serving.shadow)
        default_workers, default_kind = worker_count(settings)
        self.worker_kind = worker_kind or default_kind
        self.workers = workers or default_workers
        self.schema = InputSchema.build(
            cfg, self.contract, None, settings.serve_max_request_rows, settings.pii_salt
        )
        self.log = PredictionLogWriter(
            log_uri(cfg, settings),
            cfg.registered_model_name,
            settings.prediction_log_queue_rows,
            self.metrics,
            in_process=self.worker_kind == "thread",  # no processes spawned in thread mode
        )
        self.pool: Any = None
        self.models: Any = None
        self.batcher: Any = None
        self.started_s = time.time()
        self._watch_task: asyncio.Task[None] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._label_digests: collections.OrderedDict[str, str] = collections.OrderedDict()

    async def start(self) -> None:
        """Schema, workers, models, log, batcher and registry poll (see the module docstring)."""
        self.loop = asyncio.get_running_loop()
        resolved = await asyncio.to_thread(resolve_served, self.cfg, self.settings)
        champion = resolved[bus.CHAMPION]
        if champion is not None:
            types = await asyncio.to_thread(signature_types, champion["model_uri"], self.settings)
            self.schema = InputSchema.build(
                self.cfg, self.contract, types, self.settings.serve_max_request_rows, self.settings.pii_salt
            )
        self.log.start()
        self.pool = await asyncio.to_thread(WorkerPool, self.workers, self.settings, self.worker_kind)
        self.models = ModelSet(
            self.cfg,
            self.settings,
            self.pool,
            self.schema.example_columns(),
            self.schema.dtypes,
            self.metrics,
        )
        self.models.on_stage = self.follow_rollout_stage
        self.batcher = Batcher(
            self.pool,
            self.models,
            self.settings,
            self.metrics,
            self.schema.dtypes,
            self.routing,
            self.cfg.serving.salt,
            on_shadow=self.log_shadow,
        )
        try:
            await self.models.refresh()
        except (
            Exception
        ) as exc:  # the registry may come up later: the poll retries, /ready says 503 meanwhile
            LOG.warning("initial model load failed: %s", exc)
            self.models.last_error = str(exc)[:300]
        self.batcher.start()
        self._watch_task = asyncio.create_task(self.models.watch(self.settings.serve_poll_s))

    async def stop(self) -> None:
        """Refuse new requests, drain, write the log out, stop the workers."""
        if self._watch_task is not None:
            self._watch_task.cancel()
            await asyncio.gather(self._watch_task, return_exceptions=True)
        if self.batcher is not None:
            await self.batcher.close()
        await asyncio.to_thread(self.log.close)
        if self.pool is not None:
            await asyncio.to_thread(self.pool.close)

    # --------------------------------------------------------------------------------------------------------

    async def score(self, parsed: ParsedRequest, request_id: str) -> JobResult:
        """Queue a valid request and wait for its scores.

        Raises:
            RequestError: 503 (admission control, no model, timeout) or 422 (the model failed on this
                request).
        """
        entity_ids = [
            eid if eid is not None else (request_id if parsed.n_rows == 1 else f"{request_id}-{i}")
            for i, eid in enumerate(parsed.entity_ids)
        ]
        job = Job(
            request_id, parsed.columns, parsed.n_rows, entity_ids, asyncio.get_running_loop().create_future()
        )
        self.batcher.submit(job)
        timeout_s = max(10.0, 20 * self.settings.serve_latency_budget_ms / 1000)
        try:
            return await asyncio.wait_for(asyncio.shield(job.future), timeout_s)
        except TimeoutError:
            self.metrics.rejected.labels("timeout").inc()
            self.log_failed(job)
            raise RequestError(
                503,
                "TEMPORARILY_UNAVAILABLE",
                "no worker answered in time; retry later",
                headers={"Retry-After": "1"},
            ) from None
        except RequestError as exc:
            if (exc.status >= 500 and exc.status != 503) or exc.error_code == "MODEL_ERROR":
                self.log_failed(job)  # the model's failure (not admission control): the guardrails count it
            raise

    def log_failed(self, job: Job) -> None:
        """Queue a failed request's routed rows as ``error`` rows of the arm that owned them."""
        if not job.arms or self.models is None:
            return
        versions = [model.version if (model := self.models.get(arm)) else "" for arm in job.arms]
        self.log.submit(
            LogEntry(
                time.time(),
                job.request_id,
                ERROR,
                list(range(job.n_rows)),
                job.entity_ids,
                job.arms,
                versions,
                job.experiment,
                [0.0] * job.n_rows,
                [""] * job.n_rows,
                None,
                None,
                {},
            )
        )

    def log_primary(
        self, parsed: ParsedRequest, result: JobResult, request_id: str, logged_at: float, latency_ms: float
    ) -> None:
        """Queue the request's answered rows for the prediction log (never blocks)."""
        rows = list(range(parsed.n_rows))
        self.log.submit(
            LogEntry(
                logged_at,
                request_id,
                PRIMARY,
                rows,
                result.entity_ids,
                result.arms,
                result.versions,
                result.experiment,
                result.scores,
                result.predictions,
                result.probabilities,
                latency_ms,
                parsed.columns,
            )
        )

    def log_shadow(self, job: Job, rows: Any, alias: str, version: str, outputs: CallOutputs) -> None:
        """Queue shadow outputs (called by the batcher when a shadow call returns); ``rows`` index the job's
        rows (an int array). Shadow rows carry no features: the primary row of the same request and row
        index holds them."""
        predictions, scores, probabilities = outputs.rows()
        whole = len(rows) == job.n_rows
        positions = rows.tolist()
        self.log.submit(
            LogEntry(
                time.time(),
                job.request_id,
                SHADOW,
                positions,
                job.entity_ids if whole else [job.entity_ids[i] for i in positions],
                [alias] * len(positions),
                [version] * len(positions),
                job.experiment,
                scores,
                predictions,
                probabilities,
                None,
                {},
            )
        )

    # --------------------------------------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """``GET /version``: model name, versions by alias, routing mode, dataset, workers, log health."""
        models = (
            self.models.describe() if self.models is not None else {"name": self.cfg.registered_model_name}
        )
        has_challenger = self.models is not None and self.models.get(bus.CHALLENGER) is not None
        return {
            **models,
            "dataset": self.cfg.name,
            "routing": self.routing.describe(),
            "effective_routing": self.routing.effective(has_challenger).describe(),
            "workers": {"count": self.workers, "kind": self.worker_kind},
            "prediction_log": {
                "written_rows": self.log.written_rows,
                "dropped_rows": self.log.dropped_rows,
                "pending_rows": self.log.pending_rows,
                "last_error": self.log.last_error or None,
            },
            "uptime_s": round(time.time() - self.started_s, 1),
        }

    def set_routing(self, payload: Any) -> dict[str, Any]:
        """Change the routing knobs at run time (admin endpoint); takes effect on the next batch."""
        self.routing = self.routing.updated(payload)
        self.batcher.routing = self.routing
        LOG.info("routing set to %s", self.routing.describe())
        return self.routing.describe()

    def follow_rollout_stage(self, stage: str | None) -> None:
        """Route as the challenger's rollout stage says (the config's routing outside a rollout)."""
        from driftloop.serving.online.rollout import stage_routing

        default = Routing(self.cfg.serving.challenger_share, self.cfg.serving.shadow)
        self.routing = stage_routing(stage, default)
        if self.batcher is not None:
            self.batcher.routing = self.routing
        LOG.info("rollout stage %s: routing %s", stage, self.routing.describe())

    def accept_labels(self, body: bytes) -> dict[str, Any]:
        """``POST /labels``: validate and write one label file into the landing zone (an identical retry is a
        no-op).

        Raises:
            RequestError: 4xx for a bad body (see :func:`driftloop.serving.online.labels.parse_labels`).
        """
        pairs = parse_labels(body, self.cfg, self.contract, self.settings.serve_max_request_rows)
        content = label_file_bytes(pairs, self.cfg)
        digest = hashlib.sha256(content).hexdigest()
        if (
            digest in self._label_digests
        ):  # a client retry: ingesting the same bytes twice is a quarantined replay
            return {"accepted": len(pairs), "file": self._label_digests[digest], "duplicate": True}
        path = write_label_file(content, StatePaths.for_dataset(self.cfg, self.settings).labels_landing_dir)
        self._label_digests[digest] = path.name
        while len(self._label_digests) > RECENT_LABEL_FILES:
            self._label_digests.popitem(last=False)
        self.metrics.labels_received.inc(len(pairs))
        return {"accepted": len(pairs), "file": path.name, "duplicate": False}
