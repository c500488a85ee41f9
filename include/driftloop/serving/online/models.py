"""Which model versions serve: ``champion`` and ``challenger`` resolved from the registry, swapped when warm.

:class:`ModelSet` polls the registry off the request path (a thread, every ``DRIFTLOOP_SERVE_POLL_S``). When
an alias moves, the new version is loaded and warmed in every worker while the old one keeps serving; only
then does the alias switch to it, in one step on the event loop, and the old version is dropped. A version
that fails to load is reported (``GET /version``, metrics) and the old one serves on; the next poll tries
again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from driftloop.core import bus
from driftloop.core.config import DatasetConfig
from driftloop.core.settings import Settings

LOG = logging.getLogger(__name__)
ALIASES = (bus.CHAMPION, bus.CHALLENGER)


@dataclass(frozen=True)
class ServedModel:
    """One served version behind an alias."""

    alias: str
    version: str
    run_id: str
    model_uri: str
    decision: Any = (
        None  # driftloop.core.task_types.Decision recorded on the version (task, classes, threshold)
    )


def resolve_served(cfg: DatasetConfig, settings: Settings) -> dict[str, dict[str, str] | None]:
    """What the registry's aliases point at now (a challenger equal to the champion counts as none)."""
    from driftloop.core.registry import resolve_alias

    resolved = {alias: resolve_alias(cfg, alias, settings) for alias in ALIASES}
    champion, challenger = resolved[bus.CHAMPION], resolved[bus.CHALLENGER]
    if champion and challenger and champion["model_version"] == challenger["model_version"]:
        resolved[bus.CHALLENGER] = None
    return resolved


def version_decision(cfg: DatasetConfig, settings: Settings, version: str) -> Any:
    """The :class:`~driftloop.core.task_types.Decision` recorded on a registered version (the config's for an
    untagged one)."""
    from driftloop.core.task_types import read_decision
    from driftloop.core.tracking import get_client

    tags = get_client(settings).get_model_version(cfg.registered_model_name, version).tags
    return read_decision(cfg, tags)


def signature_types(model_uri: str, settings: Settings) -> dict[str, str] | None:
    """Column → MLflow type name of a registered model's input signature, or None when it has none."""
    from mlflow.models import get_model_info

    from driftloop.core.tracking import mlflow_scope

    with mlflow_scope(settings):
        signature = get_model_info(model_uri).signature
    if signature is None or signature.inputs is None or not signature.inputs.has_input_names():
        return None
    return {spec.name: str(getattr(spec.type, "name", spec.type)) for spec in signature.inputs.inputs}


class ModelSet:
    """The served versions by alias, kept in step with the registry (see the module docstring)."""

    def __init__(
        self,
        cfg: DatasetConfig,
        settings: Settings,
        pool: Any,
        warm_columns: dict[str, list[Any]],
        dtypes: dict[str, str],
        metrics: Any = None,
    ) -> None:
        self.cfg = cfg
        self.settings = settings
        self.pool = pool
        self.warm_columns = warm_columns
        self.dtypes = dtypes
        self.metrics = metrics
        self.served: dict[str, ServedModel] = {}
        self.last_error = ""
        self.last_refresh_s = 0.0
        self._lock = asyncio.Lock()
        self.rollout_stage: str | None = None  # the served challenger's (driftloop.serving.online.rollout)
        self.on_stage: Callable[[str | None], None] | None = None  # called when it changes

    def get(self, alias: str) -> ServedModel | None:
        """The version serving ``alias`` now, or None."""
        return self.served.get(alias)

    @property
    def ready(self) -> bool:
        """True once a champion is loaded and warm in every worker."""
        return bus.CHAMPION in self.served

    def describe(self) -> dict[str, Any]:
        """Name, versions by alias and the last load error, for ``GET /version``."""
        return {
            "name": self.cfg.registered_model_name,
            "versions": {alias: model.version for alias, model in self.served.items()},
            "decisions": {
                model.version: {
                    "task": model.decision.task,
                    "classes": list(model.decision.classes),
                    "threshold": model.decision.threshold,
                }
                for model in self.served.values()
                if model.decision is not None
            },
            "aliases": {
                alias: bus.model_alias_uri(self.cfg.registered_model_name, alias) for alias in self.served
            },
            "last_load_error": self.last_error or None,
        }

    async def refresh(self) -> dict[str, str | None]:
        """Resolve the aliases once and swap every version that moved (after it is warm everywhere).

        Returns:
            Alias → version served after the refresh (None when the alias is unset).
        """
        async with self._lock:
            resolved = await asyncio.to_thread(resolve_served, self.cfg, self.settings)
            for alias in ALIASES:
                await self._apply(alias, resolved[alias])
            keep = [model.version for model in self.served.values()]
            if keep:
                await self.pool.drop(keep)
            await self._follow_rollout()
            self.last_refresh_s = time.time()
            return {
                alias: (self.served[alias].version if alias in self.served else None) for alias in ALIASES
            }

    async def _follow_rollout(self) -> None:
        """Read the served challenger's rollout stage and report a change (the service routes by it)."""
        from driftloop.serving.online.rollout import read_challenger_stage

        challenger = self.served.get(bus.CHALLENGER)
        version = challenger.version if challenger else None
        stage = await asyncio.to_thread(read_challenger_stage, self.cfg, self.settings, version)
        if stage != self.rollout_stage:
            LOG.info("rollout stage of challenger v%s: %s -> %s", version, self.rollout_stage, stage)
            self.rollout_stage = stage
            if self.on_stage is not None:
                self.on_stage(stage)

    async def _apply(self, alias: str, target: dict[str, str] | None) -> None:
        current = self.served.get(alias)
        if target is None:
            if (
                current is not None and alias == bus.CHALLENGER
            ):  # a champion is never unloaded: it keeps serving
                del self.served[alias]
                self._count_swap(alias, None)
            return
        if current is not None and current.version == target["model_version"]:
            return
        try:
            decision = await asyncio.to_thread(
                version_decision, self.cfg, self.settings, target["model_version"]
            )
            model = ServedModel(
                alias, target["model_version"], target["run_id"], target["model_uri"], decision
            )
            timings = await self.pool.load(
                model.version, model.model_uri, self.warm_columns, self.dtypes, decision
            )
        except Exception as exc:  # the old version serves on; the next poll tries again
            self.last_error = f"{alias} v{target['model_version']}: {str(exc)[:300]}"
            LOG.error("could not load %s", self.last_error)
            if self.metrics is not None:
                self.metrics.load_failures.labels(alias).inc()
            return
        self.served[alias] = model  # the switch: one assignment on the event loop, after every worker is warm
        self.last_error = ""
        why = next((t.get("replay") for t in timings if t.get("replay")), "")
        LOG.info(
            "%s is now v%s (load %.2fs), scored by %s",
            alias,
            model.version,
            max(t["load_s"] for t in timings),
            f"its pipeline ({why})" if why else "the numpy replay of its preprocessing",
        )
        self._count_swap(alias, model.version)

    def _count_swap(self, alias: str, version: str | None) -> None:
        if self.metrics is None:
            return
        self.metrics.swaps.labels(alias).inc()
        self.metrics.model_version.labels(alias).set(float(version) if version and version.isdigit() else 0)

    async def load_into(self, worker: Any) -> None:
        """Load every served version into one (fresh) worker."""
        for model in list(self.served.values()):
            await worker.call(
                "load", model.version, model.model_uri, self.warm_columns, self.dtypes, model.decision
            )

    async def replace_dead_workers(self) -> int:
        """Start a fresh worker for every dead one and load the served versions into it; returns how many."""
        dead = self.pool.dead()
        for worker in dead:
            fresh = self.pool.replace(worker)
            if self.metrics is not None:
                self.metrics.worker_restarts.inc()
            await self.load_into(fresh)
        return len(dead)

    async def watch(self, poll_s: float) -> None:
        """Poll the registry every ``poll_s`` seconds until cancelled (and replace dead workers); errors are
        logged and retried."""
        while True:
            await asyncio.sleep(poll_s)
            try:
                await self.replace_dead_workers()
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # registry unreachable: keep serving what is loaded
                self.last_error = f"registry poll failed: {str(exc)[:300]}"
                LOG.warning(self.last_error)
