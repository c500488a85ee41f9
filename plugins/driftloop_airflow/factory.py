"""The DAG factory: every DAG file builds its DAG once per dataset config of the deployment.

A DAG file defines ``build(dataset)`` (the ``@dag`` function, its tasks calling ``run_stage(dataset, ...)``)
and hands it to :func:`build_for_each_dataset`, which calls it for every usable config of the catalog
(:func:`driftloop.core.catalog.read_catalog`: every ``<name>.yaml`` in ``DRIFTLOOP_CONFIG_DIR``, or the names
in ``DRIFTLOOP_DATASETS``). DAG ids are ``bus.dag_id(dataset, dag_name)``: ``telco_churn__training_pipeline``.

A refused config (invalid, ``name`` not its file name, or sharing a registered model or state folder with
another config) gets no DAGs at all, and the others are built as usual. ``dags/dataset_configs.py`` calls
:func:`report_refused_configs`, which turns the refusals into that file's import error (naming each config
file and the key) through a placeholder DAG whose ``validate()`` raises. The placeholder lives in a file of
its own on purpose: Airflow's dag-processor marks every DAG of a file with an import error as stale
(``is_stale``, no longer scheduled), so a placeholder beside the real DAGs would stop every dataset's DAGs of
that file, not only the broken one's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from driftloop.core.catalog import Catalog, read_catalog
from driftloop.core.errors import ConfigError
from driftloop.core.settings import Settings

REPORT_DAG_ID = "dataset_configs"


def read_deployment_catalog() -> Catalog:
    """The catalog of this process's settings, read now (so a changed environment is seen on the next
    parse)."""
    return read_catalog(Settings.from_env())


def build_for_each_dataset(build: Callable[[str], Any]) -> list[str]:
    """Call ``build(dataset)`` for every usable dataset config; refused ones are skipped (and reported
    elsewhere).

    Args:
        build: Builds one dataset's DAG (it calls the ``@dag`` function, which registers the DAG).

    Returns:
        The datasets built for, sorted.
    """
    datasets = read_deployment_catalog().datasets
    for dataset in datasets:
        build(dataset)
    return datasets


def report_refused_configs(doc_md: str | None = None) -> Any:
    """Register a placeholder DAG that fails validation naming every refused config; None when there is none.

    Airflow's DagBag records the placeholder's ``validate()`` error as this file's import error and bags
    nothing for it, so the Airflow UI shows which config files are refused and why, and no DAG of another file
    is touched.

    Args:
        doc_md: The calling file's docstring.
    """
    from airflow.sdk import DAG

    from driftloop_airflow import START_DATE

    catalog = read_deployment_catalog()
    problems = catalog.describe_problems()
    if not problems:
        return None

    class RefusedConfigsDag(DAG):
        """Stands for the DAGs of refused dataset configs: it never validates, so it is never scheduled."""

        def validate(self) -> None:
            raise ConfigError(
                f"dataset configs refused in {catalog.config_dir}; their DAGs are not built:\n{problems}"
            )

    with RefusedConfigsDag(
        dag_id=REPORT_DAG_ID,
        schedule=None,
        start_date=START_DATE,
        doc_md=doc_md,
        tags=["driftloop", "config"],
    ) as placeholder:
        pass
    return placeholder
