#!/usr/bin/env bash
# First-start init of the postgres container (mounted into /docker-entrypoint-initdb.d): one role and one
# database per application, so Airflow and MLflow never share credentials or schemas.
#   airflow      Airflow metadata DB (also the Celery result backend)
#   mlflow       MLflow backend store (experiments, runs, registry)
#   mlflow_auth  MLflow basic-auth users and permissions
#   driftloop_audit  the champion audit log: owned by audit_owner (creates the append-only table once, from
#                    airflow-init); the pipelines connect as audit_writer, which gets INSERT and SELECT only
#   driftloop_serving  the online service's prediction log, owned by role serving (the service writes it with COPY,
#                    the ab_evaluation DAG reads it)
set -euo pipefail

: "${AIRFLOW_DB_PASSWORD:?AIRFLOW_DB_PASSWORD is required}" "${MLFLOW_DB_PASSWORD:?MLFLOW_DB_PASSWORD is required}"
: "${AUDIT_OWNER_PASSWORD:?AUDIT_OWNER_PASSWORD is required}" "${AUDIT_DB_PASSWORD:?AUDIT_DB_PASSWORD is required}"
: "${PREDICTION_LOG_DB_PASSWORD:?PREDICTION_LOG_DB_PASSWORD is required}"

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v airflow_pw="$AIRFLOW_DB_PASSWORD" -v mlflow_pw="$MLFLOW_DB_PASSWORD" \
  -v audit_owner_pw="$AUDIT_OWNER_PASSWORD" -v audit_writer_pw="$AUDIT_DB_PASSWORD" \
  -v serving_pw="$PREDICTION_LOG_DB_PASSWORD" <<'SQL'
CREATE ROLE airflow LOGIN PASSWORD :'airflow_pw';
CREATE ROLE mlflow LOGIN PASSWORD :'mlflow_pw';
CREATE ROLE audit_owner LOGIN PASSWORD :'audit_owner_pw';
CREATE ROLE audit_writer LOGIN PASSWORD :'audit_writer_pw';
CREATE ROLE serving LOGIN PASSWORD :'serving_pw';
CREATE DATABASE airflow OWNER airflow;
CREATE DATABASE mlflow OWNER mlflow;
CREATE DATABASE driftloop_audit OWNER audit_owner;
CREATE DATABASE driftloop_serving OWNER serving;
CREATE DATABASE mlflow_auth OWNER mlflow;
REVOKE ALL ON DATABASE airflow FROM PUBLIC;
REVOKE ALL ON DATABASE mlflow FROM PUBLIC;
REVOKE ALL ON DATABASE mlflow_auth FROM PUBLIC;
REVOKE ALL ON DATABASE driftloop_audit FROM PUBLIC;
REVOKE ALL ON DATABASE driftloop_serving FROM PUBLIC;
GRANT CONNECT ON DATABASE driftloop_audit TO audit_writer;
SQL
echo "postgres-init: created databases airflow, mlflow, driftloop_audit, driftloop_serving, mlflow_auth"
