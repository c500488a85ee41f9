"""The loop driver (``make demo``) stops at the first failed step and says why and where to look, within
seconds.

The dataset is issue #17's failure (a): ISLR Hitters with player names ("-Andy Allanson") as ids, with the
contract an older bootstrap wrote (formula check on for the id column). The reference file is quarantined
whole, the data run fails, and the driver must stop there with the quarantine report, instead of waiting for a
training run that cannot come.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600, method="thread")]

PROJECT_DIR = Path(__file__).resolve().parents[2]
MATRIX_DIR = PROJECT_DIR / "tests" / "data" / "matrix_configs"


def test_driver_stops_at_a_quarantined_reference_with_the_reason(tmp_path, monkeypatch):
    import yaml

    config_dir = tmp_path / "configs"
    config_dir.mkdir()
    shutil.copy(MATRIX_DIR / "hitters_names.yaml", config_dir)
    for key, value in {
        "DRIFTLOOP_CONFIG_DIR": str(config_dir),
        "DRIFTLOOP_HOME": str(tmp_path / "home"),
        "DRIFTLOOP_DATASET": "hitters_names",
        "DRIFTLOOP_DATASETS": "hitters_names",
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("DRIFTLOOP_CONFIG_OVERRIDES", raising=False)
    from driftloop.core.config import load_dataset_config
    from driftloop.core.tracking import get_client
    from driftloop.data.contract.bootstrap import bootstrap_contract

    cfg = load_dataset_config("hitters_names")
    contract_path = Path(bootstrap_contract(cfg)["contract_path"])
    raw = yaml.safe_load(contract_path.read_text())
    del raw["columns"]["rownames"]["formula_check"]  # the contract as bootstrapped before issue #17
    contract_path.write_text(yaml.safe_dump(raw, sort_keys=False))

    migrate = subprocess.run(
        [str(Path(sys.executable).with_name("airflow")), "db", "migrate"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert migrate.returncode == 0, migrate.stderr[-3000:]
    from airflow.dag_processing.dagbag import DagBag

    from driftloop_ops.loop import InProcessRunner, LoopStepFailed, drive_closed_loop

    bag = DagBag(dag_folder=str(PROJECT_DIR / "dags"))
    assert bag.import_errors == {}
    lines: list[str] = []
    started = time.monotonic()
    with pytest.raises(LoopStepFailed) as failed:
        drive_closed_loop(InProcessRunner(dict(bag.dags)), cfg, get_client(), log=lines.append)
    seconds = time.monotonic() - started

    message = str(failed.value)
    assert message.startswith("loop stopped at step data_1:"), message
    assert "hitters_names__data_pipeline" in message
    assert "quarantined" in message and "too_many_bad_rows" in message, message
    assert "log:" in message  # where the failed task's log is
    assert [line.split()[:2] for line in lines] == [["hitters_names__data_pipeline", "failed"]], lines
    assert seconds < 120, seconds  # no wait for the training run that cannot come
