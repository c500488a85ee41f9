#!/usr/bin/env bash
# Health check of the mlflow service (docker-compose.yaml). MLflow's own /health answers "OK" even when its
# database is gone, so this makes one authenticated API call instead: the basic-auth app reads the user from the
# auth database and the handler reads the Default experiment from the backend store. Healthy only when both
# answer. The credentials come from the service environment and never appear on a command line.
set -euo pipefail
exec python - <<'PY'
import base64
import os
import sys
import urllib.request

user = os.environ["MLFLOW_AUTH_ADMIN_USERNAME"]
password = os.environ["MLFLOW_AUTH_ADMIN_PASSWORD"]
token = base64.b64encode(f"{user}:{password}".encode()).decode()
request = urllib.request.Request(
    "http://localhost:5000/api/2.0/mlflow/experiments/get?experiment_id=0",
    headers={"Authorization": f"Basic {token}"},
)
try:
    with urllib.request.urlopen(request, timeout=8) as response:
        response.read()
except Exception as exc:  # noqa: BLE001 - any failure is "unhealthy"
    print(f"mlflow unhealthy: {exc}", file=sys.stderr)
    sys.exit(1)
PY
