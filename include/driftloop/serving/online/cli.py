"""``driftloop serve`` (the online service), ``driftloop serving-export`` and ``driftloop ab-evaluate``."""

from __future__ import annotations

import sys
from typing import Any

SERVICE_LOG_HANDLER = "driftloop-serve"


def add_cli(subparsers: Any) -> None:
    """Register ``serve``, ``serving-export`` and ``ab-evaluate``."""
    from driftloop.core.commands import dataset_parent

    serve = subparsers.add_parser(
        "serve",
        parents=[dataset_parent()],
        help="online scoring with champion/challenger routing and a prediction log",
    )
    serve.add_argument("--host", help="address to bind (default: $DRIFTLOOP_SERVE_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default: $DRIFTLOOP_SERVE_PORT or 8000)")
    serve.add_argument(
        "--workers",
        type=int,
        help="inference processes (default: $DRIFTLOOP_SERVE_WORKERS; 0 = one per core)",
    )
    serve.add_argument(
        "--log-level", default="info", help="the service's and uvicorn's log level (default: info)"
    )
    serve.set_defaults(func=_cmd_serve)
    export = subparsers.add_parser(
        "serving-export",
        parents=[dataset_parent()],
        help="export closed windows of served traffic to monitoring (what ab_evaluation does)",
    )
    export.set_defaults(func=_cmd_serving_export)
    evaluate = subparsers.add_parser(
        "ab-evaluate",
        parents=[dataset_parent()],
        help="decide champion vs challenger on labelled served traffic",
    )
    evaluate.add_argument("--dry-run", action="store_true", help="decide and record, but do not promote")
    evaluate.set_defaults(func=_cmd_ab_evaluate)


def _cmd_serve(args: Any) -> int:
    import uvicorn

    from driftloop.core.config import load_dataset_config
    from driftloop.core.settings import Settings
    from driftloop.serving.online.app import create_app

    settings = Settings.from_env()
    overrides = {
        key: value
        for key, value in (
            ("serve_host", args.host),
            ("serve_port", args.port),
            ("serve_workers", args.workers),
        )
        if value is not None
    }
    settings = settings.replace(**overrides)
    show_service_logs(args.log_level)
    cfg = load_dataset_config(getattr(args, "dataset", None), settings)
    unreachable = tracking_server_unreachable(settings.tracking_uri)
    if unreachable:
        print(f"driftloop serve: {unreachable}", file=sys.stderr)
        return 1
    app = create_app(cfg, settings)
    uvicorn.run(
        app,
        host=settings.serve_host,
        port=settings.serve_port,
        loop="uvloop",
        http="httptools",
        log_level=args.log_level,
        access_log=False,
        timeout_graceful_shutdown=30,
        timeout_keep_alive=30,
    )
    return 0


def tracking_server_unreachable(tracking_uri: str, timeout_s: float = 5.0) -> str | None:
    """Why the service cannot start on ``tracking_uri`` (an MLflow server that does not answer its health
    check), in one line with what fixes it; None when it answers or the URI is not a server."""
    import urllib.request

    if not tracking_uri.startswith(("http://", "https://")):
        return None
    url = f"{tracking_uri.rstrip('/')}/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s):  # the configured tracking server
            return None
    except Exception as exc:  # any failure to answer means the same to the person at the terminal
        return (
            f"the MLflow server at {tracking_uri} does not answer ({type(exc).__name__}: {exc}); start the "
            "stack with 'make up', or point MLFLOW_TRACKING_URI at a running server"
        )


def show_service_logs(level: str) -> None:
    """Print the service's own messages (versions loaded and swapped, how they are scored, prediction log
    faults) on stderr at ``level``, in uvicorn's format; without a handler only warnings reached the
    terminal, bare."""
    import logging

    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)-9s %(name)s: %(message)s"))
    logger = logging.getLogger("driftloop")
    logger.handlers = [h for h in logger.handlers if getattr(h, "name", "") != SERVICE_LOG_HANDLER]
    handler.name = SERVICE_LOG_HANDLER
    logger.addHandler(handler)
    level_number = logging.getLevelName(level.upper())
    logger.setLevel(level_number if isinstance(level_number, int) else logging.DEBUG)  # uvicorn's "trace"
    logger.propagate = False  # one line per message, whatever the root logger has


def _cmd_serving_export(args: Any) -> int:
    from driftloop.core.commands import print_result
    from driftloop.core.config import load_dataset_config
    from driftloop.serving.online.export import export_served_windows

    print_result(export_served_windows(load_dataset_config(getattr(args, "dataset", None))))
    return 0


def _cmd_ab_evaluate(args: Any) -> int:
    from driftloop.core.commands import print_result
    from driftloop.core.config import load_dataset_config
    from driftloop.serving.online.ab_decision import evaluate_ab

    print_result(evaluate_ab(load_dataset_config(getattr(args, "dataset", None)), apply=not args.dry_run))
    return 0
