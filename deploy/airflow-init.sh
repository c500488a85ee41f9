#!/usr/bin/env bash
# One-shot init job (compose service airflow-init): migrate the Airflow metadata DB, create the first admin.
# Idempotent: safe on every `docker compose up`.
set -euo pipefail

echo "airflow-init: waiting for the metadata database"
for attempt in $(seq 1 60); do
  if airflow db check >/dev/null 2>&1; then break; fi
  [[ "$attempt" == 60 ]] && { echo "airflow-init: metadata database unreachable" >&2; exit 1; }
  sleep 2
done

echo "airflow-init: champion audit log schema (append-only; audit_writer may only insert and read)"
driftloop audit-init --writer-role audit_writer

echo "airflow-init: airflow db migrate"
airflow db migrate

# Creates the admin on first start; on later starts FAB reports that the user exists and leaves it unchanged.
echo "airflow-init: ensuring admin user ${AIRFLOW_ADMIN_USERNAME}"
airflow users create --role Admin \
  --username="${AIRFLOW_ADMIN_USERNAME}" --password="${AIRFLOW_ADMIN_PASSWORD}" \
  --email "${AIRFLOW_ADMIN_EMAIL}" --firstname Driftloop --lastname Admin
airflow version
