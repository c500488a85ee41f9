"""The Driftloop view in the Airflow UI: a FastAPI app on the api-server (JSON, HTML page, dashboard health
strip).

Mounted at :data:`URL_PREFIX` by ``plugins/driftloop_plugin.py`` (``fastapi_apps``), shown in Airflow's
navigation and on each Driftloop DAG's page (``external_views``) and as a strip on the home dashboard
(``react_apps``). Plugin routes get no Airflow authentication of their own: every data route requires the
Airflow login (:data:`GetUserDep`; the DAG-level routes also ``requires_access_dag``), the HTML pages send an
anonymous browser to Airflow's login page. Only the dashboard bundle (static JavaScript, no data) is public.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from airflow.api_fastapi.core_api.security import GetUserDep, get_user, requires_access_dag
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse

if TYPE_CHECKING:
    from driftloop.governance.overview_results import Overview

URL_PREFIX = "/driftloop"
STATIC_DIR = Path(__file__).with_name("static")
HEALTH_BUNDLE = "health-strip.js"

app = FastAPI(
    title="Driftloop view", description="Champion, drift, retrains, quarantine and KPIs per dataset"
)


def dataset_of_dag(dag_id: str) -> str:
    """The dataset a Driftloop DAG id belongs to; 404 for another DAG."""
    from driftloop.core import bus

    try:
        return bus.split_dag_id(dag_id)[0]
    except ValueError as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from exc


def read_overview(datasets: list[str] | None = None) -> Overview:
    """The view's data from MLflow, the state folders and the audit log (see
    :mod:`driftloop.governance.overview`)."""
    from driftloop.governance.overview import build_overview

    return build_overview(datasets=datasets)


def summarize_health(overview: Overview) -> list[dict[str, Any]]:
    """One line per dataset for the dashboard strip: champion, metric, last drift decision, and the loop's
    state with its detail (``loop_state`` of :func:`driftloop.governance.overview.describe_dataset`)."""
    lines = []
    for d in overview["datasets"]:
        last, champion, loop = d["last_decision"], d["champion"], d["loop_state"]
        lines.append(
            {
                "dataset": d["dataset"],
                "champion": champion["version"] if champion else None,
                "champion_url": champion["mlflow_url"] if champion else "",
                "metric": d["kpis"]["primary_metric"],
                "metric_value": d["kpis"]["primary_value"],
                "drift_share": last["drift_share"] if last else None,
                "drift_threshold": d["drift_threshold"],
                "decision": last["decision"] if last else "",
                "state": loop["state"],
                "detail": loop["detail"],
            }
        )
    return lines


async def page_user(request: Request) -> Any:
    """The logged-in user of a page request, or a redirect to Airflow's login page that comes back here."""
    from fastapi.security import HTTPAuthorizationCredentials

    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    bearer = HTTPAuthorizationCredentials(scheme=scheme, credentials=token) if token else None
    try:
        return await get_user(request, None, bearer)
    except HTTPException as exc:
        if exc.status_code != 401:
            raise
        from airflow.api_fastapi.app import get_auth_manager

        return RedirectResponse(get_auth_manager().get_url_login(next_url=str(request.url)), status_code=303)


PageUser = Annotated[Any, Depends(page_user)]


@app.get("/api/overview")
async def api_overview(user: GetUserDep) -> dict[str, Any]:
    """Every dataset's view data as JSON (login required)."""
    return dict(await run_in_threadpool(read_overview))


@app.get("/api/health")
async def api_health(user: GetUserDep) -> dict[str, Any]:
    """The dashboard strip's data: one line per dataset (login required)."""
    overview = await run_in_threadpool(read_overview)
    return {"datasets": summarize_health(overview), "path": URL_PREFIX + "/"}


@app.get("/api/dags/{dag_id}", dependencies=[Depends(requires_access_dag("GET"))])
async def api_dag(dag_id: str) -> dict[str, Any]:
    """One Driftloop DAG's dataset as JSON (read access to that DAG required)."""
    dataset = dataset_of_dag(dag_id)
    return dict(await run_in_threadpool(read_overview, [dataset]))


@app.get("/", response_class=HTMLResponse)
async def page_overview(user: PageUser) -> Any:
    """The Driftloop page: every dataset."""
    if isinstance(user, RedirectResponse):
        return user
    from driftloop.governance.overview_page import render_page

    return HTMLResponse(render_page(await run_in_threadpool(read_overview), "Driftloop"))


@app.get("/dags/{dag_id}", response_class=HTMLResponse)
async def page_dag(dag_id: str, request: Request, user: PageUser) -> Any:
    """The DAG-level page: the dataset the DAG belongs to."""
    if isinstance(user, RedirectResponse):
        return user
    requires_access_dag("GET")(request, user)
    dataset = dataset_of_dag(dag_id)
    from driftloop.governance.overview_page import render_page

    overview = await run_in_threadpool(read_overview, [dataset])
    return HTMLResponse(render_page(overview, f"Driftloop · {dataset}"))


@app.get("/static/" + HEALTH_BUNDLE)
async def health_bundle() -> FileResponse:
    """The dashboard strip's ES module (code only; the data comes from ``/api/health`` with the login)."""
    return FileResponse(STATIC_DIR / HEALTH_BUNDLE, media_type="text/javascript")


FASTAPI_APP = {"app": app, "url_prefix": URL_PREFIX, "name": "Driftloop view"}
EXTERNAL_VIEWS = [
    {
        "name": "Driftloop",
        "href": URL_PREFIX + "/",
        "destination": "nav",
        "url_route": "driftloop",
        "category": "browse",
    },
    {
        "name": "Driftloop",
        "href": URL_PREFIX + "/dags/{DAG_ID}",
        "destination": "dag",
        "url_route": "driftloop-dag",
    },
]
REACT_APPS = [
    {
        "name": "DriftloopHealth",
        "bundle_url": f"{URL_PREFIX}/static/{HEALTH_BUNDLE}",
        "destination": "dashboard",
        "url_route": "driftloop-health",
    },
]
