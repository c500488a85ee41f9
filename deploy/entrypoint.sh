#!/usr/bin/env bash
# Entrypoint of the Driftloop image: refuse to start on a missing or unsafe secret, then exec the command.
#
# Each service lists the variables it needs in DRIFTLOOP_REQUIRED_SECRETS (see docker-compose.yaml).
# A secret is rejected when it is empty, shorter than 12 characters, a well-known default, or (for passwords
# that end up inside connection URLs) not URL-safe.
set -euo pipefail

fail() {
  echo "driftloop entrypoint: $*" >&2
  echo "driftloop entrypoint: refusing to start; set it in .env (see .env.example and docs/production.md)" >&2
  exit 78  # EX_CONFIG
}

known_defaults=" airflow admin password password1234 changeme change-me secret postgres mlflow redis example "

for name in ${DRIFTLOOP_REQUIRED_SECRETS:-}; do
  value="${!name:-}"
  [[ -n "$value" ]] || fail "$name is not set"
  lowered="$(printf '%s' "$value" | tr '[:upper:]' '[:lower:]')"
  [[ "$known_defaults" != *" $lowered "* ]] || fail "$name uses a well-known default value"
  [[ "$lowered" != *"changeme"* && "$lowered" != *"change-me"* ]] || fail "$name still holds the .env.example placeholder"
  (( ${#value} >= 12 )) || fail "$name is shorter than 12 characters"
done

# Passwords that are interpolated into postgresql:// and redis:// URLs must not need escaping.
for name in AIRFLOW_DB_PASSWORD MLFLOW_DB_PASSWORD REDIS_PASSWORD AUDIT_DB_PASSWORD AUDIT_OWNER_PASSWORD \
            PREDICTION_LOG_DB_PASSWORD; do
  value="${!name:-}"
  if [[ -n "$value" && ! "$value" =~ ^[A-Za-z0-9._~-]+$ ]]; then
    fail "$name must be URL-safe (letters, digits, . _ ~ -); generate one with: openssl rand -hex 24"
  fi
done

exec "$@"
