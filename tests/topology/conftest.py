"""Fixtures of the production-topology tests: the native stack (Postgres + Redis + Celery + MLflow with auth).

When PostgreSQL or Redis cannot be reached the native tests skip locally, with the reason, but FAIL when
``CI=true``: CI promises both services, so their absence is a broken pipeline, not a reason to pass.
"""

from __future__ import annotations

import time

import pytest

from tests.constants import service_missing
from tests.topology.harness import Stack, StackError, services_unreachable


def require_services() -> None:
    """Skip (locally) or fail (in CI) when PostgreSQL or Redis is unreachable."""
    problems = services_unreachable()
    if not problems:
        return
    service_missing("production-topology tests need PostgreSQL and Redis: " + "; ".join(problems))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):
    """The whole native topology, up and healthy, for one test module; torn down after it."""
    require_services()
    root = tmp_path_factory.mktemp("topology")
    topo = Stack(root=root, workers=2)
    started = time.monotonic()
    try:
        topo.start()
    except StackError as exc:
        topo.teardown()
        pytest.fail(f"native topology did not start: {exc}\n(logs: {topo.logs_dir})", pytrace=False)
    except BaseException:
        topo.teardown()
        raise
    topo.startup_s = time.monotonic() - started
    try:
        yield topo
    finally:
        topo.teardown()
