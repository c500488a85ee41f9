"""Structural checks of docker-compose.yaml, the Dockerfile, .env.example and deploy/ (no Docker engine
needed).

What an engine would only tell us at ``docker compose up`` time is checked here: every service of the
production topology exists, long-running ones have health checks, ``depends_on`` conditions point at services
that can satisfy them, builds and scripts resolve to files in the repo, ports are published on localhost only,
every variable is documented in .env.example, secrets are required (``${VAR:?msg}``) and never defaulted, the
Airflow config keys exist in this Airflow version, and the environment matches the names the package reads.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from tests.constants import REQUIRED_SECRETS

pytestmark = [pytest.mark.topology]

REPO = Path(__file__).resolve().parents[2]
COMPOSE_PATH = REPO / "docker-compose.yaml"
ENV_EXAMPLE = REPO / ".env.example"

AIRFLOW_SERVICES = (
    "airflow-init",
    "airflow-api-server",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
)
SERVICES = ("postgres", "redis", "mlflow", *AIRFLOW_SERVICES, "serving")
ONE_SHOT = {"airflow-init"}
SECRET_NAME = re.compile(r"(PASSWORD|SECRET|FERNET|_KEY$|SALT|TOKEN)")
VAR_REF = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}")


@pytest.fixture(scope="module")
def raw() -> str:
    return COMPOSE_PATH.read_text()


@pytest.fixture(scope="module")
def compose(raw: str) -> dict:
    return yaml.safe_load(raw)


@pytest.fixture(scope="module")
def services(compose: dict) -> dict:
    return compose["services"]


def env_example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def generated_env() -> dict[str, str]:
    """A complete .env as an operator would write it (generated secrets, example defaults)."""
    import secrets

    from cryptography.fernet import Fernet

    env = {k: v for k, v in env_example().items() if v}
    for name in REQUIRED_SECRETS:
        env[name] = secrets.token_hex(16)
    env.update(
        AIRFLOW_FERNET_KEY=Fernet.generate_key().decode(),
        AIRFLOW_ADMIN_USERNAME="ops-lead",
        AIRFLOW_ADMIN_EMAIL="ops@example.com",
        MLFLOW_ADMIN_USERNAME="mlflow-ops",
    )
    return env


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose-style ``${VAR}``, ``${VAR:-default}``, ``${VAR:?msg}`` substitution (``$$`` escapes)."""

    def sub(match: re.Match) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3)
        current = env.get(name, "")
        if op in (":-", "-") and not current:
            return arg
        if op in (":?", "?") and not current:
            raise KeyError(f"{name}: {arg}")
        return current

    return VAR_REF.sub(sub, value).replace("$$", "$")


def service_env(service: dict, env: dict[str, str] | None = None) -> dict[str, str]:
    raw_env = service.get("environment") or {}
    if isinstance(raw_env, list):
        raw_env = dict(item.split("=", 1) for item in raw_env)
    if env is None:
        return {k: str(v) for k, v in raw_env.items()}
    return {k: interpolate(str(v), env) for k, v in raw_env.items()}


# ------------------------------------------------------------------ services, health, dependencies
def test_every_service_of_the_topology_exists(services):
    missing = [name for name in SERVICES if name not in services]
    assert not missing, f"docker-compose.yaml lacks services {missing}"


def test_every_long_running_service_has_a_healthcheck(services):
    for name, service in services.items():
        if name in ONE_SHOT:
            assert service.get("restart") == "no", f"{name} is a one-shot job and must not restart"
            continue
        check = service.get("healthcheck") or {}
        assert check.get("test"), f"{name} has no healthcheck"
        assert not check.get("disable"), f"{name} disables its healthcheck"
        for key in ("interval", "timeout", "retries"):
            assert key in check, f"{name} healthcheck lacks {key}"


def test_depends_on_uses_conditions_that_can_be_met(services):
    for name, service in services.items():
        deps = service.get("depends_on") or {}
        assert isinstance(deps, dict), f"{name}: depends_on must use the long form with conditions"
        for dep, spec in deps.items():
            assert dep in services, f"{name} depends on unknown service {dep}"
            assert dep != name
            condition = (spec or {}).get("condition")
            assert condition in ("service_healthy", "service_completed_successfully"), (name, dep, condition)
            if condition == "service_healthy":
                assert services[dep].get("healthcheck", {}).get("test"), (
                    f"{name} waits for {dep} health, which has no check"
                )
            else:
                assert dep in ONE_SHOT, f"{name} waits for {dep} to complete, but {dep} runs forever"
    for name in AIRFLOW_SERVICES:
        deps = services[name]["depends_on"]
        assert deps["postgres"]["condition"] == "service_healthy", name
        if name not in ONE_SHOT:
            assert deps["airflow-init"]["condition"] == "service_completed_successfully", name
            assert deps["redis"]["condition"] == "service_healthy", name
            assert deps["mlflow"]["condition"] == "service_healthy", name
    assert services["mlflow"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_no_dependency_cycle(services):
    graph = {name: set(svc.get("depends_on") or {}) for name, svc in services.items()}
    visiting, done = set(), set()

    def visit(node: str, path: list[str]) -> None:
        assert node not in visiting, f"depends_on cycle: {' -> '.join([*path, node])}"
        if node in done:
            return
        visiting.add(node)
        for nxt in graph[node]:
            visit(nxt, [*path, node])
        visiting.discard(node)
        done.add(node)

    for node in graph:
        visit(node, [])


# ------------------------------------------------------------------ image, build, scripts
def test_one_image_built_from_the_repo_dockerfile(services):
    images = set()
    for name in ("mlflow", *AIRFLOW_SERVICES):
        service = services[name]
        build = service.get("build")
        assert build, f"{name} must be built from the Dockerfile"
        context = REPO / build.get("context", ".")
        assert context.is_dir(), f"{name}: build context {context} does not exist"
        assert (context / build.get("dockerfile", "Dockerfile")).is_file(), f"{name}: Dockerfile missing"
        images.add(service.get("image"))
    assert len(images) == 1, f"every Driftloop service must use the one image, got {images}"
    for name in ("postgres", "redis"):
        image = interpolate(services[name].get("image", ""), {})  # the default: the official image
        assert re.fullmatch(r"[a-z0-9./-]+:[A-Za-z0-9._-]+", image) and not image.endswith(":latest"), (
            f"{name} must pin an image tag, got {image!r}"
        )


def test_dockerfile_installs_the_pinned_requirements_and_copies_existing_paths():
    text = (REPO / "Dockerfile").read_text()
    assert re.search(r"pip install -r requirements\.txt -c constraints\.txt", text)
    assert re.search(r"^ARG BASE_IMAGE=python:3\.11", text, re.M), (
        "the image must use the project's Python (3.11)"
    )
    assert re.search(r"^FROM \$\{BASE_IMAGE\}", text, re.M)
    for line in re.findall(r"^COPY\s+(.+)$", text, re.M):
        if "--from=" in line:
            continue  # copied from a build stage, not from the repo
        *sources, _dest = line.split()
        for source in sources:
            if source.startswith("--"):
                continue
            assert (REPO / source).exists(), f"Dockerfile copies {source}, which does not exist"
    ignored = (REPO / ".dockerignore").read_text().splitlines()
    for needed in ("requirements.txt", "constraints.txt", "include", "dags", "plugins", "deploy"):
        assert needed not in ignored, f".dockerignore excludes {needed}, which the image needs"
    for secret in (".env", ".driftloop", ".venv", ".git"):
        assert secret in ignored, f".dockerignore must exclude {secret}"


def test_commands_and_mounted_scripts_exist_and_are_executable(services):
    for name, service in services.items():
        parts = [*(service.get("command") or []), *(service.get("entrypoint") or [])]
        for part in parts:
            if isinstance(part, str) and part.startswith("/opt/driftloop/deploy/"):
                path = REPO / "deploy" / Path(part).name
                assert path.is_file(), f"{name} runs {part}, missing in deploy/"
                assert path.stat().st_mode & stat.S_IXUSR, f"{path} is not executable"
        for volume in service.get("volumes") or []:
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (REPO / source).exists(), f"{name} mounts {source}, which does not exist"
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "/opt/driftloop/deploy/entrypoint.sh" in dockerfile


# ------------------------------------------------------------------ ports and scaling
def test_ports_are_published_on_localhost_only_and_match_the_servers(services):
    published = {}
    env = generated_env()
    for name, service in services.items():
        for port in service.get("ports") or []:
            parts = interpolate(str(port), env).split(":")
            assert len(parts) == 3 and parts[0] == "127.0.0.1", f"{name} publishes {port}: bind to 127.0.0.1"
            published[name] = parts[2]
    assert set(published) == {"airflow-api-server", "mlflow", "serving"}, published
    assert published["airflow-api-server"] == "8080"
    assert published["serving"] == "8000" and services["serving"]["command"][-2:] == ["--port", "8000"]
    assert "--port" in services["airflow-api-server"]["command"]
    assert (
        services["airflow-api-server"]["command"][
            services["airflow-api-server"]["command"].index("--port") + 1
        ]
        == "8080"
    )
    assert published["mlflow"] == "5000"
    assert "--port 5000" in (REPO / "deploy" / "mlflow-server.sh").read_text()
    hosts = [interpolate(str(p), env).split(":")[1] for s in services.values() for p in s.get("ports") or []]
    assert len(hosts) == len(set(hosts)), "two services publish the same host port"


def test_worker_is_scalable(services):
    worker = services["airflow-worker"]
    assert "container_name" not in worker, "container_name prevents --scale"
    assert not worker.get("ports"), "a fixed host port prevents --scale"
    assert worker["command"][:3] == ["airflow", "celery", "worker"]
    assert "--celery-hostname" not in worker["command"], "each replica must keep its own (container) hostname"
    named = set((yaml.safe_load(COMPOSE_PATH.read_text()) or {}).get("volumes") or {})
    for volume in worker.get("volumes") or []:
        assert volume.split(":")[0] in named, f"worker mounts {volume}: only shared named volumes scale"


def test_state_lives_in_named_volumes(compose, services):
    named = set(compose.get("volumes") or {})
    expected = {
        "postgres": "/var/lib/postgresql/data",
        "redis": "/data",
        "mlflow": "/mlflow/artifacts",
    }
    for name, path in expected.items():
        mounts = {v.split(":")[1]: v.split(":")[0] for v in services[name]["volumes"]}
        assert mounts.get(path) in named, f"{name} keeps {path} outside a named volume"
    for name in AIRFLOW_SERVICES:
        mounts = {v.split(":")[1]: v.split(":")[0] for v in services[name]["volumes"]}
        assert mounts.get("/opt/driftloop/state") == "driftloop-state", f"{name} must share DRIFTLOOP_HOME"
        assert mounts.get("/opt/airflow/logs") == "airflow-logs", f"{name} must share task logs"


# ------------------------------------------------------------------ variables and secrets
def test_every_variable_is_documented_in_env_example(raw):
    used = {m.group(1) for m in VAR_REF.finditer(raw)}
    documented = set(env_example())
    assert used - documented == set(), (
        f"used in docker-compose.yaml but not in .env.example: {sorted(used - documented)}"
    )
    assert documented - used == set(), f"in .env.example but unused: {sorted(documented - used)}"


def test_required_secrets_use_the_error_form_everywhere(raw):
    refs: dict[str, set[str]] = {}
    for match in VAR_REF.finditer(raw):
        refs.setdefault(match.group(1), set()).add(match.group(2) or "")
        if match.group(2) == ":?":
            assert match.group(3).strip(), f"${{{match.group(1)}:?}} needs a message"
    assert REQUIRED_SECRETS <= set(refs), f"secrets never referenced: {sorted(REQUIRED_SECRETS - set(refs))}"
    for name in REQUIRED_SECRETS:
        assert refs[name] == {":?"}, f"{name} must always be ${{{name}:?message}}, found forms {refs[name]}"
    for name, forms in refs.items():
        if SECRET_NAME.search(name):
            assert forms == {":?"}, f"{name} looks secret and must be required, found forms {forms}"


# Object-store credentials are optional (an instance role, or DRIFTLOOP_STORAGE_CONN_ID): compose passes them
# through from .env without a value of its own.
OPTIONAL_CREDENTIALS = frozenset({"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"})


def test_no_literal_secret_in_compose_or_env_example(services):
    for name, service in services.items():
        for key, value in service_env(service).items():
            value = str(value)
            if value == "None" and key in OPTIONAL_CREDENTIALS:
                continue  # passed through from .env only when set there: no value, so no literal secret
            if SECRET_NAME.search(key) and key != "DRIFTLOOP_REQUIRED_SECRETS":
                assert value.startswith("${") and ":?" in value, (
                    f"{name}.{key} is not a required variable: {value!r}"
                )
            for url in re.findall(r"[a-z+]+://[^\s\"']+", value):
                password = urlsplit(url.replace("${", "{").replace("}", "")).password
                if password is not None:
                    assert password == "" or password.startswith("{"), (
                        f"{name}.{key} embeds a literal password"
                    )
    example = env_example()
    for name in REQUIRED_SECRETS:
        assert example.get(name, None) == "", f".env.example must leave {name} empty"


def test_airflow_services_share_one_airflow3_configuration(services):
    env = generated_env()
    envs = {name: service_env(services[name], env) for name in AIRFLOW_SERVICES}
    common_keys = (
        "AIRFLOW__CORE__EXECUTOR",
        "AIRFLOW__CORE__AUTH_MANAGER",
        "AIRFLOW__CORE__FERNET_KEY",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
        "AIRFLOW__API_AUTH__JWT_SECRET",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
        "AIRFLOW__CELERY__BROKER_URL",
        "AIRFLOW__CELERY__RESULT_BACKEND",
        "AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS",
    )
    for key in common_keys:
        values = {name: e.get(key) for name, e in envs.items()}
        assert None not in values.values(), f"{key} missing on {[n for n, v in values.items() if v is None]}"
        assert len(set(values.values())) == 1, f"{key} differs between Airflow services: {values}"
    one = envs["airflow-worker"]
    assert one["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    # Workers import the heavy stack once, before forking their pool (driftloop_airflow.preload).
    assert one["AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS"] == "driftloop_airflow.preload.CELERY_CONFIG"
    assert one["AIRFLOW__CORE__AUTH_MANAGER"].endswith("FabAuthManager")
    api = urlsplit(one["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
    assert api.hostname == "airflow-api-server" and api.port == 8080 and api.path == "/execution/"
    for key, service, port in (
        ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "postgres", 5432),
        ("AIRFLOW__CELERY__RESULT_BACKEND", "postgres", 5432),
        ("AIRFLOW__CELERY__BROKER_URL", "redis", 6379),
    ):
        url = urlsplit(one[key])
        assert url.hostname == service and url.port == port, f"{key} must point at the {service} service"
        assert url.password, f"{key} must authenticate"
    assert urlsplit(one["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]).path == "/airflow"


def test_airflow_config_keys_exist_in_this_airflow_version(services, tmp_path):
    keys = set()
    for name in AIRFLOW_SERVICES:
        for key in service_env(services[name]):
            if key.startswith("AIRFLOW__"):
                _, section, option = key.split("__", 2)
                keys.add((section.lower(), option.lower()))
    code = (
        "import json, sys\n"
        "from airflow.configuration import conf\n"
        "desc = conf.configuration_description\n"
        "keys = json.loads(sys.argv[1])\n"
        "print(json.dumps([k for k in keys if k[1] not in desc.get(k[0], {}).get('options', {})]))\n"
    )
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")},
        "AIRFLOW_HOME": str(tmp_path),
    }
    out = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", code, json.dumps(sorted(keys))],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    unknown = json.loads(out.stdout.strip().splitlines()[-1])
    assert unknown == [], f"not Airflow config options: {unknown}"


def test_environment_matches_the_package_settings(services):
    """The worker environment, read by driftloop's own Settings, points at the mlflow service and shared
    state."""
    from driftloop.core.config import load_dataset_config
    from driftloop.core.settings import Settings

    env = generated_env()
    worker_env = service_env(services["airflow-worker"], env)
    for name in ("DRIFTLOOP_HOME", "MLFLOW_TRACKING_URI", "DRIFTLOOP_DATASET", "DRIFTLOOP_CONFIG_OVERRIDES"):
        assert name in worker_env, f"the worker environment lacks {name}"
    settings = Settings.from_env({**worker_env, "DRIFTLOOP_CONFIG_DIR": str(REPO / "include" / "configs")})
    tracking = urlsplit(settings.tracking_uri)
    assert tracking.hostname == "mlflow" and tracking.port == 5000
    assert str(settings.home_dir) == "/opt/driftloop/state"
    assert load_dataset_config(settings=settings).name == settings.dataset
    assert worker_env["MLFLOW_TRACKING_USERNAME"] == env["MLFLOW_ADMIN_USERNAME"]
    assert worker_env["MLFLOW_TRACKING_PASSWORD"] == env["MLFLOW_ADMIN_PASSWORD"]
    mlflow_env = service_env(services["mlflow"], env)
    assert mlflow_env["MLFLOW_AUTH_ADMIN_USERNAME"] == worker_env["MLFLOW_TRACKING_USERNAME"]
    assert mlflow_env["MLFLOW_AUTH_ADMIN_PASSWORD"] == worker_env["MLFLOW_TRACKING_PASSWORD"]


def test_every_driftloop_and_mlflow_variable_is_read_somewhere(services):
    sources = "\n".join(
        p.read_text(errors="replace")
        for folder in ("include", "plugins", "dags", "deploy")
        for p in (REPO / folder).rglob("*")
        if p.is_file() and p.suffix in (".py", ".sh", "")
    )
    import mlflow.environment_variables as mlflow_env_vars

    known_mlflow = {
        v.name for v in vars(mlflow_env_vars).values() if hasattr(v, "name") and hasattr(v, "get")
    }
    known_mlflow |= {"MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_URI"}
    for name, service in services.items():
        for key in service_env(service):
            if key.startswith("DRIFTLOOP_"):
                assert key in sources, (
                    f"{name}.{key} is read by nothing in include/, plugins/, dags/ or deploy/"
                )
            if key.startswith("MLFLOW_"):
                assert key in known_mlflow or key in sources, (
                    f"{name}.{key} is neither an MLflow setting nor read"
                )


def test_postgres_init_creates_the_databases_the_urls_use(services):
    script = (REPO / "deploy" / "postgres-init.sh").read_text()
    created = set(re.findall(r"CREATE DATABASE (\w+)", script))
    assert {"airflow", "mlflow", "mlflow_auth"} <= created
    env = generated_env()
    used = {
        urlsplit(service_env(services["airflow-worker"], env)["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]).path[1:]
    }
    server = (REPO / "deploy" / "mlflow-server.sh").read_text()
    used |= set(re.findall(r"@\$\{db_host\}/(\w+)", server))
    assert used == {"airflow", "mlflow", "mlflow_auth"}, used
    assert used <= created
    # The prediction log: the service writes where the ab_evaluation DAG on the workers reads.
    serving_uri = service_env(services["serving"], env)["DRIFTLOOP_PREDICTION_LOG_URI"]
    assert serving_uri == service_env(services["airflow-worker"], env)["DRIFTLOOP_PREDICTION_LOG_URI"]
    assert urlsplit(serving_uri).path[1:] in created


# ------------------------------------------------------------------ deploy scripts, run for real
def _entrypoint(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(REPO / "deploy" / "entrypoint.sh"), "echo", "started"],
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "is not set"),
        ("admin", "well-known default"),
        ("changeme-please-123", "placeholder"),
        ("short1", "shorter"),
    ],
)
def test_entrypoint_refuses_missing_or_weak_secrets(value, reason):
    out = _entrypoint(
        {"DRIFTLOOP_REQUIRED_SECRETS": "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_PASSWORD": value}
    )
    assert out.returncode == 78, out
    assert "MLFLOW_TRACKING_PASSWORD" in out.stderr and reason in out.stderr
    assert "started" not in out.stdout


def test_entrypoint_refuses_passwords_that_break_urls_and_accepts_good_secrets():
    bad = _entrypoint({"AIRFLOW_DB_PASSWORD": "p@ss/word:with#chars"})
    assert bad.returncode == 78 and "URL-safe" in bad.stderr
    good = _entrypoint(
        {
            "DRIFTLOOP_REQUIRED_SECRETS": "A_SECRET B_SECRET",
            "A_SECRET": "0123456789abcdef",
            "B_SECRET": "S0me-Long_value.~",
            "AIRFLOW_DB_PASSWORD": "0123456789abcdef",
        }
    )
    assert good.returncode == 0, good.stderr
    assert good.stdout.strip() == "started"


def test_mlflow_server_script_renders_a_private_auth_config(tmp_path):
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "mlflow").write_text(
        '#!/usr/bin/env bash\nprintf "%s\\n" "$@" > "$OUT/args"\ncp "$MLFLOW_AUTH_CONFIG_PATH" "$OUT/ini"\n'
        'stat -c %a "$MLFLOW_AUTH_CONFIG_PATH" > "$OUT/mode"\n'
    )
    (fake_bin / "mlflow").chmod(0o755)
    env = {
        "PATH": f"{fake_bin}:{os.environ['PATH']}",
        "OUT": str(tmp_path),
        "MLFLOW_DB_PASSWORD": "dbpass0123456789",
        "MLFLOW_AUTH_ADMIN_USERNAME": "mlflow-ops",
        "MLFLOW_AUTH_ADMIN_PASSWORD": "adminpass0123456",
        "MLFLOW_FLASK_SERVER_SECRET_KEY": "flask0123456789",
    }
    out = subprocess.run(
        ["bash", str(REPO / "deploy" / "mlflow-server.sh")], env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    args = (tmp_path / "args").read_text().split("\n")
    assert args[0] == "server"
    assert (
        "--serve-artifacts" in args
        and "--app-name" in args
        and args[args.index("--app-name") + 1] == "basic-auth"
    )
    backend = args[args.index("--backend-store-uri") + 1]
    assert urlsplit(backend).path == "/mlflow" and urlsplit(backend).hostname == "postgres"
    ini = (tmp_path / "ini").read_text()
    assert "database_uri = postgresql+psycopg2://mlflow:dbpass0123456789@postgres:5432/mlflow_auth" in ini
    assert "admin_password" not in ini, (
        "the admin password comes from MLFLOW_AUTH_ADMIN_PASSWORD, not the file"
    )
    assert (tmp_path / "mode").read_text().strip() == "600"
    # MLflow's own reader sees the credential cache: without it each request re-checks the scrypt hash.
    from mlflow.server.auth.config import read_auth_config

    (tmp_path / "copy.ini").write_text(ini)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_AUTH_CONFIG_PATH", str(tmp_path / "copy.ini"))
        assert read_auth_config().auth_cache_ttl_seconds == 60
    missing = subprocess.run(
        ["bash", str(REPO / "deploy" / "mlflow-server.sh")],
        env={**env, "MLFLOW_AUTH_ADMIN_PASSWORD": ""},
        capture_output=True,
        text=True,
    )
    assert missing.returncode != 0


def test_deploy_scripts_are_valid_bash():
    for script in sorted((REPO / "deploy").glob("*.sh")):
        out = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert out.returncode == 0, f"{script.name}: {out.stderr}"


# ------------------------------------------------------------------ docker compose itself, when available
def _compose_cli() -> list[str] | None:
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def test_docker_compose_config_accepts_a_full_env_and_refuses_a_missing_secret(tmp_path):
    cli = _compose_cli()
    if cli is None:
        pytest.skip(
            "`docker compose` (the Compose plugin) is not installed here, so `docker compose config` cannot "
            "run; "
            "the structural tests above cover the same ground without it"
        )
    full = tmp_path / "full.env"
    full.write_text("".join(f"{k}={v}\n" for k, v in generated_env().items()))
    ok = subprocess.run(
        [*cli, "--env-file", str(full), "-f", str(COMPOSE_PATH), "config", "-q"],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr
    partial = tmp_path / "partial.env"
    partial.write_text("".join(f"{k}={v}\n" for k, v in generated_env().items() if k != "AIRFLOW_FERNET_KEY"))
    refused = subprocess.run(
        [*cli, "--env-file", str(partial), "-f", str(COMPOSE_PATH), "config", "-q"],
        capture_output=True,
        text=True,
    )
    assert refused.returncode != 0 and "AIRFLOW_FERNET_KEY" in refused.stderr


def test_the_container_tests_env_sets_every_variable_compose_requires(raw):
    """The generated .env of the container tests must satisfy every ``${NAME:?}``: a name missed there only
    shows in the Docker stage, 40 minutes into CI, as 11 errors."""
    from tests.containers.harness import Images, generate_env

    required = {m.group(1) for m in VAR_REF.finditer(raw) if m.group(2) == ":?"}
    env = generate_env(Images(app="a", base="b", postgres="p", redis="r"), 1, 2, 3)
    assert required - set(env) == set(), f"the container tests' .env misses {sorted(required - set(env))}"
    assert all(env[name] for name in required), "a required variable is empty in the generated .env"
