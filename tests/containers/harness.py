"""docker-compose.yaml run for real: images, a generated .env, compose commands and facts about the
containers.

Images come from ``deploy/offline/build-images.sh`` (Debian packages only: no Docker Hub needed) unless
``DRIFTLOOP_TEST_IMAGES=hub``, which builds the Driftloop image on ``python:3.11-slim-bookworm`` and lets
compose pull the official Postgres and Redis images. The host's system CA bundle is given to the build as the
extra CA (``EXTRA_CA_BUNDLE``, a BuildKit secret), so pip works behind a TLS-inspecting proxy.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.alert_sinks import smtp_conn_uri
from tests.constants import FAST_OVERRIDES, SECRET_NAMES

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yaml"
TEST_OVERRIDE = Path(__file__).with_name("compose.test.yaml")
ALERT_SINK = "alert-sink"
ALERT_EMAIL_TO = "ops@example.org"
# The object store of compose.test.yaml, inside the project's network, and the stack's bucket in it.
OBJECT_STORE_URL = "http://object-store:9000"
OBJECT_STORE_BUCKET = "driftloop-stack"
# Celery workers started with the stack, each with its own disk.
WORKERS = 2
BUILD_SCRIPT = REPO / "deploy" / "offline" / "build-images.sh"
SYSTEM_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
APP_IMAGE = os.environ.get("DRIFTLOOP_TEST_IMAGE", "driftloop:container-test")
# Figures for pytest's terminal summary (build, start and loop times, image sizes), filled in by the tests.
FIGURES: dict[str, str] = {}
PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"


class ContainerStackError(RuntimeError):
    """A compose or docker command failed, or a wait ran out of time."""


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1", "yes")


def sh(
    argv: list[str], timeout_s: float = 600, check: bool = True, **kwargs: Any
) -> subprocess.CompletedProcess:
    """Run a command, capturing text output; raise with its output when ``check`` and it fails."""
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, **kwargs)
    except subprocess.TimeoutExpired as exc:
        raise ContainerStackError(f"{' '.join(argv[:6])} ... timed out after {timeout_s:.0f} s") from exc
    if check and out.returncode != 0:
        raise ContainerStackError(
            f"{' '.join(argv[:8])} ... exited {out.returncode}:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
        )
    return out


def wait_for(check, timeout_s: float, what: str, interval_s: float = 2.0) -> Any:
    """Call ``check`` until it returns something truthy; ContainerStackErrors it raises end the wait."""
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except ContainerStackError:
            raise
        except Exception as exc:  # retried until the deadline
            last = exc
        time.sleep(interval_s)
    raise ContainerStackError(
        f"timed out after {timeout_s:.0f} s waiting for {what}" + (f": {last}" if last else "")
    )


def compose_cli() -> list[str] | None:
    """``docker compose`` (v2 plugin) when installed, else Debian's ``docker-compose`` (1.29)."""
    if shutil.which("docker") and sh(["docker", "compose", "version"], 60, check=False).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def docker_problem() -> str | None:
    """Why the container tests cannot run here, or None."""
    if not shutil.which("docker"):
        return "the docker CLI is not installed"
    info = sh(["docker", "info", "--format", "{{.ServerVersion}}"], 60, check=False)
    if info.returncode != 0:
        return f"the Docker engine does not answer: {(info.stderr or info.stdout).strip()[:300]}"
    if compose_cli() is None:
        return "neither `docker compose` nor `docker-compose` is installed"
    if os.environ.get("DRIFTLOOP_TEST_IMAGES", "offline") == "offline" and not shutil.which("debootstrap"):
        return "debootstrap is not installed (apt-get install debootstrap)"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ------------------------------------------------------------------------------------------------ images
@dataclass
class Images:
    app: str
    base: str
    postgres: str
    redis: str
    seconds: dict[str, float] = field(default_factory=dict)


def build_env() -> dict[str, str]:
    env = {**os.environ, "DRIFTLOOP_IMAGE": APP_IMAGE}
    if "EXTRA_CA_BUNDLE" not in env and SYSTEM_CA_BUNDLE.is_file():
        env["EXTRA_CA_BUNDLE"] = str(SYSTEM_CA_BUNDLE)
    return env


def build_offline_images(log_path: Path) -> Images:
    """Base, stand-ins (reused when they exist) and the Driftloop image, through
    deploy/offline/build-images.sh."""
    started = time.monotonic()
    out = sh(["bash", str(BUILD_SCRIPT)], timeout_s=1500, check=False, env=build_env(), cwd=REPO)
    log_path.write_text(out.stdout + "\n" + out.stderr)
    if out.returncode != 0:
        raise ContainerStackError(
            f"build-images.sh exited {out.returncode}; log {log_path}:\n{out.stderr[-4000:]}"
        )
    printed = dict(re.findall(r"^([A-Z_]+)=(\S+)$", out.stdout, re.M))
    seconds = {
        m[0]: float(m[1]) for m in re.findall(r"^build-images: (.+?) \(.*\): (\d+) s$", out.stderr, re.M)
    }
    seconds["all images"] = time.monotonic() - started
    return Images(
        app=printed["DRIFTLOOP_IMAGE"],
        base=printed["DRIFTLOOP_BASE_IMAGE"],
        postgres=printed["POSTGRES_IMAGE"],
        redis=printed["REDIS_IMAGE"],
        seconds=seconds,
    )


def buildkit_docker() -> str:
    """A docker CLI that builds with BuildKit (Docker 23+ needs buildx; Debian's 20.10 has it built in)."""
    for cli in ("docker", "/usr/bin/docker"):
        if not shutil.which(cli):
            continue
        if sh([cli, "buildx", "version"], 60, check=False).returncode == 0:
            return cli
        version = sh([cli, "version", "--format", "{{.Client.Version}}"], 60, check=False).stdout.strip()
        if version.split(".")[0].isdigit() and int(version.split(".")[0]) < 23:
            return cli
    raise ContainerStackError(
        "no docker CLI that builds with BuildKit (install buildx, or Debian's docker.io)"
    )


def build_hub_images(log_path: Path) -> Images:
    """The Driftloop image on the official Python base; compose pulls the official Postgres and Redis."""
    env = {**build_env(), "DOCKER_BUILDKIT": "1"}
    argv = [buildkit_docker(), "build", "--network", "host", "-t", APP_IMAGE]
    if env.get("EXTRA_CA_BUNDLE"):
        argv += ["--secret", f"id=extra_ca,src={env['EXTRA_CA_BUNDLE']}"]
    started = time.monotonic()
    out = sh([*argv, str(REPO)], timeout_s=1500, check=False, env=env)
    log_path.write_text(out.stdout + "\n" + out.stderr)
    if out.returncode != 0:
        raise ContainerStackError(
            f"docker build exited {out.returncode}; log {log_path}:\n{out.stderr[-4000:]}"
        )
    return Images(
        app=APP_IMAGE,
        base="python:3.11-slim-bookworm",
        postgres="postgres:16-bookworm",
        redis="redis:7.2-bookworm",
        seconds={"Driftloop image": time.monotonic() - started},
    )


def image_size_bytes(image: str) -> int:
    return int(sh(["docker", "image", "inspect", "--format", "{{.Size}}", image], 60).stdout.strip())


# Distributions the object-store service needs beyond the Driftloop image (moto's server and what moto
# imports that the image lacks); pure Python, copied from this venv.
OBJECT_STORE_DISTRIBUTIONS = ("moto", "responses", "xmltodict", "py-partiql-parser")


def object_store_site(folder: Path) -> Path:
    """A site folder holding :data:`OBJECT_STORE_DISTRIBUTIONS` with their metadata, mounted read-only into
    the ``object-store`` service."""
    from importlib.metadata import distribution

    for name in OBJECT_STORE_DISTRIBUTIONS:
        dist = distribution(name)
        for file in dist.files or []:
            if file.parts[0] == ".." or file.suffix == ".pyc":
                continue  # console scripts and byte code
            target = folder / file
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(Path(str(dist.locate_file(file))), target)
    return folder


# ------------------------------------------------------------------------------------------------ .env
def generate_env(images: Images, airflow_port: int, mlflow_port: int, serving_port: int) -> dict[str, str]:
    """A complete .env as an operator writes it: fresh random secrets, the images above, free localhost
    ports."""
    from cryptography.fernet import Fernet

    tag = uuid.uuid4().hex[:6]
    env = {name: secrets.token_hex(20) for name in SECRET_NAMES}
    env.update(
        AIRFLOW_FERNET_KEY=Fernet.generate_key().decode(),
        AIRFLOW_ADMIN_USERNAME=f"ops-{tag}",
        AIRFLOW_ADMIN_EMAIL="ops@example.com",
        MLFLOW_ADMIN_USERNAME=f"mlflow-ops-{tag}",
        DRIFTLOOP_IMAGE=images.app,
        DRIFTLOOP_BASE_IMAGE=images.base,
        POSTGRES_IMAGE=images.postgres,
        REDIS_IMAGE=images.redis,
        DRIFTLOOP_GIT_COMMIT=sh(["git", "-C", str(REPO), "rev-parse", "HEAD"], 30, check=False).stdout.strip()
        or "unknown",
        DRIFTLOOP_DATASET="telco_churn",
        DRIFTLOOP_CONFIG_OVERRIDES=json.dumps(FAST_OVERRIDES, separators=(",", ":")),
        DRIFTLOOP_N_JOBS="1",
        AIRFLOW_WORKER_CONCURRENCY="2",
        AIRFLOW_WORKER_STOP_GRACE="30s",
        AIRFLOW_PORT=str(airflow_port),
        MLFLOW_PORT=str(mlflow_port),
        SERVING_PORT=str(serving_port),
        DRIFTLOOP_SERVING_DATASET="telco_churn",
        DRIFTLOOP_SERVE_WORKERS="1",
        DRIFTLOOP_SERVE_POLL_S="2",
        AIRFLOW_PUBLIC_URL=f"http://127.0.0.1:{airflow_port}",
        MLFLOW_PUBLIC_URL=f"http://127.0.0.1:{mlflow_port}",
        MLFLOW_ALLOWED_HOSTS=f"mlflow,mlflow:5000,localhost,localhost:5000,127.0.0.1,127.0.0.1:{mlflow_port}",
        MLFLOW_WORKERS="2",
        # Alerts go to the `alert-sink` service of compose.test.yaml, as an operator points them at a relay:
        # Airflow tasks through the HTTP connection compose builds from the URL, the CLI to the URL itself.
        DRIFTLOOP_ALERT_WEBHOOK_URL=f"http://{ALERT_SINK}:8025/hook",
        DRIFTLOOP_ALERT_HTTP_CONN_ID="driftloop_alerts",
        DRIFTLOOP_ALERT_SMTP_CONN_ID="driftloop_smtp",
        DRIFTLOOP_ALERT_SMTP_URI=smtp_conn_uri(2525, ALERT_SINK),
        DRIFTLOOP_ALERT_EMAIL_TO=ALERT_EMAIL_TO,
        # No shared disk: the data zones and MLflow's artifacts live in the `object-store` service's bucket.
        OBJECT_STORE_BUCKET=OBJECT_STORE_BUCKET,
        DRIFTLOOP_DATA_URI=f"s3://{OBJECT_STORE_BUCKET}/zones",
        MLFLOW_ARTIFACTS_DESTINATION=f"s3://{OBJECT_STORE_BUCKET}/mlflow-artifacts",
        AWS_ACCESS_KEY_ID=f"driftloop-{tag}",
        AWS_SECRET_ACCESS_KEY=secrets.token_hex(20),
        AWS_ENDPOINT_URL=OBJECT_STORE_URL,
        MLFLOW_S3_ENDPOINT_URL=OBJECT_STORE_URL,
        AWS_DEFAULT_REGION="us-east-1",
    )
    return env


# ------------------------------------------------------------------------------------------------ the stack
class ComposeStack:
    """One compose project (unique name) of docker-compose.yaml + compose.test.yaml, with its own .env."""

    def __init__(self, root: Path, images: Images, env: dict[str, str] | None = None):
        self.root = Path(root)
        self.images = images
        self.project = f"dltest{uuid.uuid4().hex[:8]}"
        self.airflow_port, self.mlflow_port, self.serving_port = free_port(), free_port(), free_port()
        self.env = generate_env(images, self.airflow_port, self.mlflow_port, self.serving_port)
        self.env.update(env or {})  # the deployment settings a test module changes (its STACK_ENV)
        self.env["OBJECT_STORE_SITE"] = str(object_store_site(self.root / "object-store-site"))
        self.env_file = self.root / ".env"
        self.env_file.write_text("".join(f"{k}={v}\n" for k, v in self.env.items()))
        self.env_file.chmod(0o600)
        self.cli = compose_cli() or ["docker-compose"]
        self.figures: dict[str, float] = {}

    @property
    def airflow_url(self) -> str:
        return f"http://127.0.0.1:{self.airflow_port}"

    @property
    def mlflow_url(self) -> str:
        return f"http://127.0.0.1:{self.mlflow_port}"

    @property
    def serving_url(self) -> str:
        return f"http://127.0.0.1:{self.serving_port}"

    def compose(self, *args: str, timeout_s: float = 600, check: bool = True) -> subprocess.CompletedProcess:
        argv = [
            *self.cli,
            "--project-name", self.project,
            "--project-directory", str(REPO),
            "--env-file", str(self.env_file),
            "-f", str(COMPOSE_FILE),
            "-f", str(TEST_OVERRIDE),
            *args,
        ]  # fmt: skip
        # Only what compose needs from the host: the .env file is the whole configuration.
        env = {
            k: v
            for k, v in os.environ.items()
            if k in ("PATH", "HOME", "DOCKER_HOST", "DOCKER_CONFIG", "LANG")
        }
        return sh(argv, timeout_s, check=check, env=env, cwd=REPO)

    # ------------------------------------------------------------------ containers
    def container_ids(self, service: str | None = None, running_only: bool = False) -> list[str]:
        argv = ["docker", "ps", "-q", "--no-trunc", "--filter", f"label={PROJECT_LABEL}={self.project}"]
        if not running_only:
            argv.insert(2, "-a")
        if service:
            argv += ["--filter", f"label={SERVICE_LABEL}={service}"]
        return sh(argv, 60).stdout.split()

    def inspect(self, ids: list[str]) -> list[dict[str, Any]]:
        return json.loads(sh(["docker", "inspect", *ids], 60).stdout) if ids else []

    def containers(self, service: str | None = None, running_only: bool = False) -> list[dict[str, Any]]:
        return self.inspect(self.container_ids(service, running_only))

    @staticmethod
    def service_of(container: dict[str, Any]) -> str:
        return container["Config"]["Labels"][SERVICE_LABEL]

    @staticmethod
    def health_of(container: dict[str, Any]) -> str | None:
        return (container["State"].get("Health") or {}).get("Status")

    def logs(self, container_id: str, tail: int = 60) -> str:
        out = sh(["docker", "logs", "--tail", str(tail), container_id], 60, check=False)
        return (out.stdout + out.stderr)[-6000:]

    def _startup_state(self, services: frozenset[str] | None = None) -> bool:
        """True once every container (of ``services``, when given) is healthy (airflow-init: exited 0);
        raises on a failure that will not heal."""
        containers = self.containers()
        if not containers:
            return False
        pending = []
        for c in containers:
            service, state = self.service_of(c), c["State"]
            if services is not None and service not in services:
                continue
            if service == "airflow-init":
                if state["Status"] == "exited" and state["ExitCode"] != 0:
                    raise ContainerStackError(
                        f"airflow-init exited {state['ExitCode']}:\n{self.logs(c['Id'])}"
                    )
                if state["Status"] != "exited":
                    pending.append(service)
            elif state["Status"] != "running" or self.health_of(c) != "healthy":
                if self.health_of(c) == "unhealthy":
                    raise ContainerStackError(f"{service} is unhealthy:\n{self.describe(c)}")
                pending.append(f"{service}={state['Status']}/{self.health_of(c)}")
        self.pending = pending
        return not pending

    def wait_healthy(self, timeout_s: float = 600, services: frozenset[str] | None = None) -> None:
        """Waits for every health check, or only those of ``services`` (scaling one service must not fail on
        another service's check that timed out while the new containers loaded the machine)."""
        self.pending: list[str] = []
        try:
            wait_for(lambda: self._startup_state(services), timeout_s, "every health check", 3)
        except ContainerStackError as exc:
            details = "\n".join(
                self.describe(c)
                for c in self.containers()
                if self.service_of(c) in {p.split("=")[0] for p in self.pending}
            )
            raise ContainerStackError(f"{exc}; still waiting for {self.pending}\n{details}") from exc

    def describe(self, container: dict[str, Any]) -> str:
        health = container["State"].get("Health") or {}
        checks = [
            f"    {h.get('ExitCode')}: {h.get('Output', '').strip()[-300:]}"
            for h in health.get("Log", [])[-3:]
        ]
        return "\n".join(
            [f"--- {container['Name']} {container['State']['Status']} health={health.get('Status')}", *checks,
             self.logs(container["Id"], 40)]
        )  # fmt: skip

    def health(self, container_id: str) -> str | None:
        return self.health_of(self.inspect([container_id])[0])

    def exec(self, service: str, *argv: str, timeout_s: float = 300, index: int | None = None) -> str:
        """``docker compose exec -T`` as the container's own user (``index`` picks a replica)."""
        extra = ["--index", str(index)] if index else []
        return self.compose("exec", "-T", *extra, service, *argv, timeout_s=timeout_s).stdout

    def object_keys(self, prefix: str = "") -> list[str]:
        """Every key under ``prefix`` in the stack's bucket, read inside the project's network."""
        script = (
            "import boto3, os, json; c = boto3.client('s3', endpoint_url='http://127.0.0.1:9000', "
            "region_name='us-east-1', aws_access_key_id=os.environ['AWS_ACCESS_KEY_ID'], "
            "aws_secret_access_key=os.environ['AWS_SECRET_ACCESS_KEY']); "
            "p = c.get_paginator('list_objects_v2'); "
            f"print(json.dumps([o['Key'] for page in p.paginate(Bucket='{OBJECT_STORE_BUCKET}', "
            f"Prefix='{prefix}') for o in page.get('Contents', [])]))"
        )
        return sorted(json.loads(self.exec("object-store", "python", "-c", script)))

    def received_alerts(self) -> list[dict[str, Any]]:
        """Everything the ``alert-sink`` service received: ``{"channel": "webhook", "body": ...}`` or
        ``{"channel": "smtp", "to": [...], "subject": ...}``, in arrival order."""
        text = self.exec(ALERT_SINK, "cat", "/tmp/alerts.jsonl", timeout_s=60)
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    # ------------------------------------------------------------------ lifecycle
    def up(self, timeout_s: float = 900) -> float:
        started = time.monotonic()
        # Two workers from the start, each with its own disk (compose.test.yaml): the loop must not need one.
        self.compose("up", "-d", "--no-build", "--scale", f"airflow-worker={WORKERS}", timeout_s=timeout_s)
        self.wait_healthy(timeout_s)
        return time.monotonic() - started

    def down(self) -> None:
        """Kill (no grace: the test is over) and remove containers, volumes and the network."""
        self.compose("kill", timeout_s=120, check=False)
        self.compose("down", "-v", "--remove-orphans", "--timeout", "5", timeout_s=300, check=False)

    def leftovers(self) -> dict[str, list[str]]:
        label = f"label={PROJECT_LABEL}={self.project}"
        found = {
            "containers": sh(["docker", "ps", "-aq", "--filter", label], 60).stdout.split(),
            "volumes": sh(["docker", "volume", "ls", "-q", "--filter", label], 60).stdout.split(),
            "networks": sh(["docker", "network", "ls", "-q", "--filter", label], 60).stdout.split(),
        }
        return {kind: ids for kind, ids in found.items() if ids}


# ------------------------------------------------------------------------------------------------ images,
# inside
def text_hits(image: str, needles: list[str]) -> set[str]:
    """Needles found in an image's history (every layer's command) or its config (env, labels, entrypoint)."""
    text = sh(["docker", "history", "--no-trunc", "--format", "{{.CreatedBy}}", image], 120).stdout
    text += sh(["docker", "image", "inspect", image], 120).stdout
    return {n for n in needles if n in text}


def filesystem_hits(image: str, needles: list[str], workdir: Path) -> set[str]:
    """Needles found anywhere in an image's filesystem (``docker export`` of a created, never started,
    container)."""
    patterns = workdir / f"needles-{uuid.uuid4().hex[:6]}"
    patterns.write_text("".join(f"{n}\n" for n in needles))
    cid = sh(["docker", "create", "--entrypoint", "true", image], 120).stdout.strip()
    try:
        export = subprocess.Popen(["docker", "export", cid], stdout=subprocess.PIPE)
        grep = subprocess.run(
            ["grep", "-aoF", "-f", str(patterns)], stdin=export.stdout, capture_output=True, timeout=900
        )
        export.stdout.close()
        export.wait(timeout=60)
    finally:
        sh(["docker", "rm", "-f", "-v", cid], 120, check=False)  # -v: the image's anonymous volumes too
        patterns.unlink()
    if grep.returncode not in (0, 1):
        raise ContainerStackError(
            f"grep over the exported filesystem of {image} failed: {grep.stderr[-500:]}"
        )
    return {line.decode(errors="replace") for line in grep.stdout.splitlines()}


def pem_certificates(text: str) -> set[str]:
    return set(re.findall(r"-----BEGIN CERTIFICATE-----\n(.+?)\n-----END CERTIFICATE-----", text, re.S))


def extra_ca_needles(image: str) -> list[str]:
    """One base64 line of each certificate the build trusted as extra CA that no bundle of the image carries.

    Those certificates (e.g. a TLS-inspecting proxy's CA) must not end up in the image: the extra CA is a
    build secret. Empty on a machine whose system bundle adds nothing to the image's own bundles.
    """
    bundle = build_env().get("EXTRA_CA_BUNDLE")
    if not bundle or not Path(bundle).is_file():
        return []
    # The public bundles the image carries: the system's, certifi's, and those packages ship with them
    # (botocore's cacert.pem): a certificate found in one of them is public, not the build's extra CA.
    script = (
        "import certifi, glob, sys; print(open(certifi.where()).read()); "
        "print(open('/etc/ssl/certs/ca-certificates.crt').read()); "
        "[print(open(p).read()) for p in glob.glob(sys.prefix + '/lib/python3*/site-packages/**/cacert.pem',"
        " recursive=True)]"
    )
    inside = sh(
        ["docker", "run", "--rm", "--network", "none", "--entrypoint", "python", image, "-c", script], 180
    )
    extra = pem_certificates(Path(bundle).read_text()) - pem_certificates(inside.stdout)
    return sorted(body.splitlines()[2] for body in extra if len(body.splitlines()) > 3)


# ------------------------------------------------------------------------------------------------ MLflow REST
class MlflowRest:
    """The few MLflow REST calls the tests need, with basic auth, on the port published on 127.0.0.1."""

    def __init__(self, base_url: str, username: str, password: str):
        import requests

        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()
        self.session.auth = (username, password)

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        response = self.session.get(f"{self.base_url}/api/2.0/mlflow/{path}", params=params, timeout=60)
        if response.status_code != 200:
            raise ContainerStackError(f"GET {path} -> {response.status_code}: {response.text[:500]}")
        return response.json()

    def model_names(self) -> list[str]:
        return [
            m["name"]
            for m in self.get("registered-models/search", max_results=100).get("registered_models", [])
        ]

    def versions(self, name: str) -> list[dict[str, Any]]:
        found = self.get("model-versions/search", filter=f"name = '{name}'", max_results=1000)
        versions = found.get("model_versions", [])
        for version in versions:
            version["tags"] = {t["key"]: t["value"] for t in version.get("tags", [])}
        return sorted(versions, key=lambda v: int(v["version"]))

    def alias(self, name: str, alias: str) -> str:
        return self.get("registered-models/alias", name=name, alias=alias)["model_version"]["version"]

    def run(self, run_id: str) -> dict[str, Any]:
        run = self.get("runs/get", run_id=run_id)["run"]
        return {
            "status": run["info"]["status"],
            "metrics": {m["key"]: m["value"] for m in run["data"].get("metrics", [])},
            "tags": {t["key"]: t["value"] for t in run["data"].get("tags", [])},
        }
