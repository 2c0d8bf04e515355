#!/usr/bin/env sh
# Create the secret files docker-compose.yaml mounts (never committed: see .gitignore).
# Demo set-up: every URL uses the postgres superuser of the compose database. In production use
# separate login roles that are members of elt_owner / elt_loader (README, "Roles").
set -eu
cd "$(dirname "$0")/secrets"
umask 077
password=$(python3 -c "import secrets; print(secrets.token_urlsafe(24))")
printf '%s' "$password" > postgres_password
printf 'postgresql://postgres:%s@postgres:5432/postgres' "$password" > warehouse_url
cp warehouse_url owner_url
cp warehouse_url dagster_url
# The Celery deployment's MinIO (deploy/celery/docker-compose.yaml) and boto3's credentials file.
minio=$(python3 -c "import secrets; print(secrets.token_urlsafe(24))")
printf '%s' "$minio" > minio_password
printf '[default]\naws_access_key_id = elt-demo\naws_secret_access_key = %s\n' "$minio" > aws_credentials
echo "secrets written to $(pwd)"
