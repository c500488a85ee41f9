"""HTTP endpoints of ``driftloop serve`` (FastAPI; see ``docs/serving.md``).

* ``POST /invocations``: MLflow's request formats and response shape (``{"predictions": [...]}``) plus the
  scores, the arm and model version of every row and the request id.
* ``POST /labels``: delayed labels into the labels landing zone (202).
* ``GET /health`` (liveness; also ``/ping`` like ``mlflow models serve``), ``GET /ready`` (503 until a
  champion is warm), ``GET /version``, ``GET /metrics`` (Prometheus).
* ``GET|PUT /admin/routing``: routing knobs at run time, with
  ``Authorization: Bearer $DRIFTLOOP_SERVE_ADMIN_TOKEN``.

This module imports FastAPI at the top (it resolves the handlers' annotations); nothing imports it at DAG
parse time. Bad input always gets a 4xx with ``{"error_code", "message"}``, and the payload is never echoed.
The body size limit is checked on ``Content-Length`` before the body is read, and again while reading a
chunked body.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from starlette.exceptions import HTTPException
from starlette.responses import Response

from driftloop.core.config import DatasetConfig
from driftloop.core.settings import Settings
from driftloop.serving.online.service import ServingService, request_id_from
from driftloop.serving.online.validation import RequestError, check_json_content_type

LOG = logging.getLogger(__name__)


def _json(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Any:
    import orjson

    return Response(orjson.dumps(payload), status_code=status, media_type="application/json", headers=headers)


def error_response(exc: RequestError) -> Any:
    """``{"error_code", "message"}`` with the error's status and headers (e.g. ``Retry-After``)."""
    return _json(_error(exc.error_code, exc.message), exc.status, exc.headers)


def _error(error_code: str, message: str) -> dict[str, str]:
    return {"error_code": error_code, "message": message}


INTERNAL_ERROR = _error("INTERNAL_ERROR", "internal error")


async def read_body(request: Any, limit_bytes: int) -> bytes:
    """The request body, refused with 413 when larger than ``limit_bytes`` (declared or actual).

    Raises:
        RequestError: 400 for a malformed ``Content-Length``, 413 when the body is too large.
    """
    return await read_chunks(request.headers.get("content-length"), request.stream(), limit_bytes)


async def read_chunks(declared: str | None, chunks: AsyncIterator[bytes], limit_bytes: int) -> bytes:
    """The body made of ``chunks``, refused with 413 when ``declared`` (``Content-Length``) or the actual size
    exceeds ``limit_bytes``.

    Raises:
        RequestError: 400 for a malformed ``Content-Length``, 413 when the body is too large.
    """
    if declared is not None:
        if not declared.isdigit():
            raise RequestError(400, "BAD_REQUEST", "Content-Length is not a number")
        if int(declared) > limit_bytes:
            raise RequestError(413, "REQUEST_LIMIT_EXCEEDED", f"the body is larger than {limit_bytes} bytes")
    parts, size = [], 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit_bytes:
            raise RequestError(413, "REQUEST_LIMIT_EXCEEDED", f"the body is larger than {limit_bytes} bytes")
        parts.append(chunk)
    return b"".join(parts)


def _arm_label(arms: list[str]) -> str:
    first = arms[0] if arms else "none"
    return first if all(arm == first for arm in arms) else "mixed"


router = APIRouter()


def _service(request: Request) -> ServingService:
    service: ServingService = request.app.state.service
    return service


@router.post("/invocations")
async def invocations(request: Request) -> Any:
    """Score rows (MLflow's formats and response shape, plus scores, arms, versions and the request id)."""
    status, body, headers = await score_body(_service(request), request.headers, request.stream())
    return Response(body, status_code=status, media_type="application/json", headers=headers)


async def score_body(
    service: ServingService, headers: Any, chunks: AsyncIterator[bytes]
) -> tuple[int, bytes, dict[str, str]]:
    """``POST /invocations`` from its headers (lower-case names) and body chunks: ``(status, JSON body,
    headers)``; bad input is a 4xx, never an exception."""
    import orjson

    metrics, start, logged_at = service.metrics, time.perf_counter(), time.time()
    try:
        check_json_content_type(headers.get("content-type"))
        body = await read_chunks(headers.get("content-length"), chunks, service.settings.serve_max_body_bytes)
        parsed = service.schema.parse(body)
        request_id = request_id_from(headers.get("x-request-id"))
        result = await service.score(parsed, request_id)
    except RequestError as exc:
        metrics.requests.labels("invocations", "none", str(exc.status)).inc()
        return exc.status, orjson.dumps(_error(exc.error_code, exc.message)), exc.headers
    latency_s = time.perf_counter() - start
    service.log_primary(parsed, result, request_id, logged_at, latency_s * 1000)
    arm = _arm_label(result.arms)
    metrics.requests.labels("invocations", arm, "200").inc()
    metrics.latency.labels(arm).observe(latency_s)
    answer = {
        "predictions": result.codes,
        "labels": result.predictions,
        "scores": result.scores,
        "arms": result.arms,
        "model_versions": result.versions,
        "model_name": service.cfg.registered_model_name,
        "request_id": request_id,
    }
    if result.probabilities is not None:
        answer["probabilities"] = result.probabilities
    return 200, orjson.dumps(answer), {"X-Request-Id": request_id}


class InvocationsFastPath:
    """The ASGI application ``driftloop serve`` runs: ``POST /invocations`` goes straight to
    :func:`score_body`, everything else (other paths, other methods, lifespan) to the FastAPI app.

    FastAPI's routing, middleware and exception layers cost about half of the HTTP process's CPU on a
    single-row request, and that process is what limits throughput at high concurrency.
    """

    def __init__(self, app: Any, service: ServingService) -> None:
        self.app = app
        self.service = service
        self.state = app.state

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        import orjson

        if scope["type"] != "http" or scope["path"] != "/invocations" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
        try:
            status, body, extra = await score_body(self.service, headers, _body_chunks(receive))
        except _ClientGone:
            return
        except Exception:  # a bug: a 500 with the usual body, never a dropped connection
            LOG.exception("unexpected error on /invocations")
            status, body, extra = 500, orjson.dumps(INTERNAL_ERROR), {}
        response_headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *((name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in extra.items()),
        ]
        await send({"type": "http.response.start", "status": status, "headers": response_headers})
        await send({"type": "http.response.body", "body": body})


class _ClientGone(Exception):  # an event: the client disconnected before sending its body
    pass


async def _body_chunks(receive: Any) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone
        yield message.get("body", b"")
        if not message.get("more_body", False):
            return


@router.post("/labels", status_code=202)
async def labels(request: Request) -> Any:
    """Delayed labels into the labels landing zone (202 Accepted; ``data_pipeline`` validates them)."""
    service = _service(request)
    try:
        check_json_content_type(request.headers.get("content-type"))
        body = await read_body(request, service.settings.serve_max_body_bytes)
        accepted = await asyncio.to_thread(service.accept_labels, body)
    except RequestError as exc:
        service.metrics.requests.labels("labels", "none", str(exc.status)).inc()
        return error_response(exc)
    service.metrics.requests.labels("labels", "none", "202").inc()
    return _json(accepted, 202)


@router.get("/health")
async def health(request: Request) -> Any:
    """Liveness: 200 while the process answers (``ready`` says whether a champion is warm)."""
    models = _service(request).models
    return _json({"status": "ok", "ready": models is not None and models.ready})


@router.get("/ping")
async def ping(request: Request) -> Any:
    """Liveness, under the path ``mlflow models serve`` uses."""
    return _json({"status": "ok"})


@router.get("/ready")
async def ready(request: Request) -> Any:
    """Readiness: 200 once a champion is warm in every worker, else 503."""
    service = _service(request)
    models = service.models
    is_ready = models is not None and models.ready and not service.batcher.closing
    body = {"ready": is_ready, **(models.describe() if models is not None else {})}
    return _json(body, 200 if is_ready else 503, None if is_ready else {"Retry-After": "5"})


@router.get("/version")
async def version(request: Request) -> Any:
    """Model name, versions by alias, routing mode, workers and prediction-log health."""
    return _json(_service(request).describe())


@router.get("/metrics")
async def prometheus(request: Request) -> Any:
    """Prometheus metrics."""
    content, content_type = _service(request).metrics.render()
    return Response(content, media_type=content_type)


def authorize(request: Request) -> None:
    """Check ``Authorization: Bearer <DRIFTLOOP_SERVE_ADMIN_TOKEN>``.

    Raises:
        RequestError: 403 when no admin token is configured, 401 when the header does not match it.
    """
    token = _service(request).settings.serve_admin_token
    if not token:
        raise RequestError(
            403, "PERMISSION_DENIED", "admin endpoints are disabled: set DRIFTLOOP_SERVE_ADMIN_TOKEN"
        )
    given = request.headers.get("authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        raise RequestError(
            401,
            "UNAUTHENTICATED",
            "send Authorization: Bearer <admin token>",
            headers={"WWW-Authenticate": "Bearer"},
        )


@router.get("/admin/routing")
async def get_routing(request: Request) -> Any:
    """The routing knobs and mode (admin)."""
    authorize(request)
    return _json(_service(request).routing.describe())


@router.put("/admin/routing")
async def put_routing(request: Request) -> Any:
    """Change ``challenger_share``, ``shadow`` or ``mode`` at run time (admin); effective on the next
    batch."""
    import orjson

    authorize(request)
    check_json_content_type(request.headers.get("content-type"))
    body = await read_body(request, 65_536)
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise RequestError(400, "BAD_REQUEST", "the body is not valid JSON") from None
    return _json(_service(request).set_routing(payload))


async def _on_request_error(request: Request, exc: RequestError) -> Any:
    return error_response(exc)


async def _on_http_error(request: Request, exc: HTTPException) -> Any:
    return _json(
        {"error_code": "NOT_FOUND" if exc.status_code == 404 else "BAD_REQUEST", "message": str(exc.detail)},
        exc.status_code,
        getattr(exc, "headers", None),
    )


async def _on_unexpected(request: Request, exc: Exception) -> Any:
    LOG.exception("unexpected error on %s", request.url.path)
    return _json(INTERNAL_ERROR, 500)


def create_app(
    cfg: DatasetConfig, settings: Settings, worker_kind: str | None = None, workers: int | None = None
) -> Any:
    """The ASGI application of one dataset's service (FastAPI behind :class:`InvocationsFastPath`); the
    service starts and stops with the app's lifespan.

    Args:
        cfg: Dataset config (model name, features, contract, serving defaults).
        settings: Process settings (limits, workers, prediction log, admin token).
        worker_kind: ``process`` (default) or ``thread`` (tests).
        workers: Number of workers; default from ``DRIFTLOOP_SERVE_WORKERS`` (one per core).
    """
    service = ServingService(cfg, settings, worker_kind, workers)

    @asynccontextmanager
    async def lifespan(app: Any) -> Any:
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    app = FastAPI(
        title="Driftloop serving", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.service = service
    app.include_router(router)
    # Starlette types handlers as taking any Exception; these take the subclass they are registered for.
    app.add_exception_handler(RequestError, _on_request_error)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, _on_http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _on_unexpected)
    return InvocationsFastPath(app, service)
