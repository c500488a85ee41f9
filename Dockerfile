# One image for every Driftloop service (Airflow components, Celery workers, MLflow server), built on the
# same pinned requirements as the embedded mode: requirements.txt + the full lock in constraints.txt.
#
#   docker compose build                     # or: docker build -t driftloop:local .
#   docker build --build-arg DRIFTLOOP_GIT_COMMIT=$(git rev-parse HEAD) -t driftloop:$(git rev-parse --short HEAD) .
FROM python:3.11-slim-bookworm

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
    && apt-get install -y --no-install-recommends build-essential curl libgomp1 tini \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --uid "${AIRFLOW_UID}" --gid 0 --create-home --home-dir /home/airflow airflow

WORKDIR /opt/driftloop

# Dependencies first, so code changes do not reinstall them.
COPY requirements.txt constraints.txt ./
RUN python -m venv "${VIRTUAL_ENV}" \
    && pip install --upgrade pip wheel setuptools \
    && pip install -r requirements.txt -c constraints.txt

# The package (editable, so include/configs resolves as in the checkout), DAGs, plugins and deploy scripts.
COPY pyproject.toml README.md ./
COPY include ./include
COPY dags ./dags
COPY plugins ./plugins
COPY deploy ./deploy
RUN pip install --no-deps -e . \
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
