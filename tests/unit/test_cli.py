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
