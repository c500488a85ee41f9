# One image for every Driftloop service (Airflow components, Celery workers, MLflow server), built on the
# same pinned requirements as the embedded mode: requirements.txt + the full lock in constraints.txt.
# BuildKit is required (RUN --mount): Docker 23+ with buildx, or DOCKER_BUILDKIT=1 on older engines.
#
#   docker compose build                     # or: docker build -t driftloop:local .
#   docker build --build-arg DRIFTLOOP_GIT_COMMIT=$(git rev-parse HEAD) -t driftloop:$(git rev-parse --short HEAD) .
#
# Build arguments and secrets (docs/production.md, "Build the images"):
#   BASE_IMAGE    any Debian bookworm image with Python 3.11 and `python -m venv` (default python:3.11-slim-bookworm;
#                 without Docker Hub: deploy/offline/build-images.sh makes driftloop/python:3.11-bookworm)
#   --secret id=extra_ca,src=corp-ca.pem
#                 a PEM bundle pip trusts while it downloads (TLS-inspecting proxy). A build secret: it is mounted
#                 for the one RUN that needs it and is in no layer of any stage.
#
# Two stages: `build` makes the virtualenv (pip, its cache and any compiler live only there); the runtime stage
# copies /opt/venv alone, so the image has no compiler, no pip cache and no build secret.
ARG BASE_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------------------------- build stage
FROM ${BASE_IMAGE} AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_DEFAULT_TIMEOUT=120 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# Every pinned package has a manylinux or pure-Python wheel for CPython 3.11, so no compiler is installed.
# Pass --build-arg BUILD_PACKAGES="build-essential" if a pin ever needs one: it stays in this stage.
ARG BUILD_PACKAGES=""
RUN if [ -n "${BUILD_PACKAGES}" ]; then \
        apt-get update && apt-get install -y --no-install-recommends ${BUILD_PACKAGES} \
        && rm -rf /var/lib/apt/lists/*; \
    fi

# pip trusts the system bundle plus the optional extra CA (a build secret, never written to a layer). The pip
# cache is a BuildKit cache mount: reused between builds on one machine, absent from every layer.
COPY requirements.txt constraints.txt /tmp/requirements/
RUN --mount=type=secret,id=extra_ca,required=false \
    --mount=type=cache,target=/root/.cache/pip,sharing=locked \
    set -eu; \
    if [ -s /run/secrets/extra_ca ]; then \
        cat $(ls /etc/ssl/certs/ca-certificates.crt 2>/dev/null) /run/secrets/extra_ca >/tmp/pip-ca.pem; \
        export PIP_CERT=/tmp/pip-ca.pem; \
    fi; \
    python -m venv "${VIRTUAL_ENV}"; \
    pip install --upgrade pip wheel -c /tmp/requirements/constraints.txt; \
    cd /tmp/requirements && pip install -r requirements.txt -c constraints.txt; \
    rm -f /tmp/pip-ca.pem

# -------------------------------------------------------------------------------------------- runtime stage
FROM ${BASE_IMAGE}

ARG AIRFLOW_UID=50000
ARG DRIFTLOOP_GIT_COMMIT=unknown

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    AIRFLOW_HOME=/opt/airflow \
    DRIFTLOOP_HOME=/opt/driftloop/state \
    DRIFTLOOP_CONFIG_DIR=/opt/driftloop/include/configs

# libgomp1: LightGBM; curl: health checks; tini: PID 1 that forwards signals (warm Celery shutdown).
RUN apt-get update \
    && apt-get install -y --no-install-recommends curl libgomp1 tini \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --uid "${AIRFLOW_UID}" --gid 0 --create-home --home-dir /home/airflow airflow

# Dependencies first, so code changes do not reinstall them.
COPY --from=build /opt/venv /opt/venv

WORKDIR /opt/driftloop

# The package (editable, so include/configs resolves as in the checkout), DAGs, plugins and deploy scripts.
# --no-build-isolation: setuptools and wheel come from the venv, so this step needs no network.
COPY pyproject.toml README.md ./
COPY include ./include
COPY dags ./dags
COPY plugins ./plugins
COPY deploy ./deploy
RUN pip install --no-deps --no-build-isolation -e . \
    && mkdir -p /opt/airflow/logs /opt/driftloop/state /mlflow/artifacts \
    && chown -R "${AIRFLOW_UID}:0" /opt/airflow /opt/driftloop/state /mlflow \
    && chmod -R g+rwX /opt/airflow /opt/driftloop/state /mlflow \
    && chmod +x deploy/*.sh

ENV DRIFTLOOP_GIT_COMMIT=${DRIFTLOOP_GIT_COMMIT} \
    AIRFLOW__CORE__DAGS_FOLDER=/opt/driftloop/dags \
    AIRFLOW__CORE__PLUGINS_FOLDER=/opt/driftloop/plugins \
    AIRFLOW__CORE__LOAD_EXAMPLES=False

USER ${AIRFLOW_UID}
EXPOSE 8080 5000
ENTRYPOINT ["/usr/bin/tini", "--", "/opt/driftloop/deploy/entrypoint.sh"]
CMD ["airflow", "version"]
