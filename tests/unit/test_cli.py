"""The ``driftloop`` command's own behaviour (sub-commands are tested with their modules)."""

from __future__ import annotations

import argparse
import warnings

from driftloop import cli


def _emitter(module: str, message: str, category: type[Warning]):
    """A function whose warnings are attributed to ``module`` (warnings filter on the caller's __name__)."""
    namespace = {"__name__": module}
    exec(f"import warnings\ndef emit():\n    warnings.warn({message!r}, {category.__name__})", namespace)
    return namespace["emit"]


def test_cli_hides_third_party_warnings_but_shows_ours(monkeypatch):
    ours = _emitter("driftloop.monitoring.live", "labels arrived for unknown ids", UserWarning)
    ops = _emitter("driftloop_ops.demo", "demo state is stale", UserWarning)
    theirs = _emitter("sklearn.utils.deprecation", "this parameter is deprecated", FutureWarning)
    lookalike = _emitter("driftloopish", "not ours either", UserWarning)

    def handler(args):
        for emit in (theirs, ours, ops, lookalike):
            emit()
        return 0

    def build_parser():
        parser = argparse.ArgumentParser()
        parser.set_defaults(func=handler, command="fake")
        return parser

    monkeypatch.setattr(cli, "build_parser", build_parser)
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")  # what a terminal would show without the CLI's filters
        assert cli.main([]) == 0
    assert [str(w.message) for w in shown] == ["labels arrived for unknown ids", "demo state is stale"]


def test_serve_prints_the_services_own_messages_once_at_the_chosen_level(capsys):
    import logging

    from driftloop.serving.online.cli import SERVICE_LOG_HANDLER, show_service_logs

    logger = logging.getLogger("driftloop")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    try:
        show_service_logs("info")
        show_service_logs("info")  # a second call does not double the lines
        models_log = logging.getLogger("driftloop.serving.online.models")
        models_log.info("champion is now v%s", 3)
        models_log.debug("not shown at info")
        err = capsys.readouterr().err
        assert err.splitlines() == ["INFO      driftloop.serving.online.models: champion is now v3"]
        assert [h.name for h in logger.handlers].count(SERVICE_LOG_HANDLER) == 1

        show_service_logs("warning")
        models_log.info("a swap")
        models_log.warning("prediction log write failed")
        assert capsys.readouterr().err.splitlines() == [
            "WARNING   driftloop.serving.online.models: prediction log write failed"
        ]
    finally:
        logger.handlers, logger.level, logger.propagate = saved[0], saved[1], saved[2]


def test_serve_without_a_running_mlflow_says_so_in_one_line_at_once(tmp_path):
    """Issue 32: `driftloop serve` with nothing on MLflow's port ended in a traceback after about 30 s."""
    import os
    import socket
    import subprocess
    import sys
    import time
    from pathlib import Path

    with socket.socket() as probe:  # a port nothing listens on once the probe closes
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}", "DRIFTLOOP_HOME": str(tmp_path)}
    started = time.monotonic()
    done = subprocess.run(
        [str(Path(sys.executable).with_name("driftloop")), "serve", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    took_s = time.monotonic() - started
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 1, done.stderr
    assert lines[-1].startswith(
        f"driftloop serve: the MLflow server at http://127.0.0.1:{port} does not answer"
    )
    assert "make up" in lines[-1] and "Traceback" not in done.stderr
    assert took_s < 30, took_s  # said at once, not after the service's start-up timeout
