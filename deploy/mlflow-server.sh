#!/usr/bin/env bash
# MLflow tracking server (compose service mlflow): Postgres backend store, artifacts served from a volume,
# basic auth with the admin from the environment. The auth config is rendered at start into a private file
# because it holds the auth database URL (with its password); it is never baked into the image.
# A verified credential is cached for MLFLOW_AUTH_CACHE_TTL_S (60 s): without it every request re-checks the
# scrypt password hash, about 0.25 s of CPU each on a 2-core machine, which made the server the busiest process
# of the stack. A password changed through the API is dropped from the cache at once by the worker that
# handled the change; the other workers keep accepting the old one for up to the TTL.
set -euo pipefail

: "${MLFLOW_DB_PASSWORD:?}" "${MLFLOW_AUTH_ADMIN_USERNAME:?}" "${MLFLOW_AUTH_ADMIN_PASSWORD:?}"
: "${MLFLOW_FLASK_SERVER_SECRET_KEY:?}"
db_host="${MLFLOW_DB_HOST:-postgres:5432}"

umask 077
auth_dir="$(mktemp -d)"
cat >"${auth_dir}/basic_auth.ini" <<INI
[mlflow]
default_permission = READ
database_uri = postgresql+psycopg2://mlflow:${MLFLOW_DB_PASSWORD}@${db_host}/mlflow_auth
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
auth_cache_ttl_seconds = ${MLFLOW_AUTH_CACHE_TTL_S:-60}
INI
export MLFLOW_AUTH_CONFIG_PATH="${auth_dir}/basic_auth.ini"

exec mlflow server \
  --host 0.0.0.0 --port 5000 --workers "${MLFLOW_WORKERS:-2}" \
  --backend-store-uri "postgresql+psycopg2://mlflow:${MLFLOW_DB_PASSWORD}@${db_host}/mlflow" \
  --serve-artifacts --artifacts-destination "${MLFLOW_ARTIFACTS_DESTINATION:-/mlflow/artifacts}" \
  --allowed-hosts "${MLFLOW_ALLOWED_HOSTS:-localhost,localhost:5000}" \
  --app-name basic-auth
