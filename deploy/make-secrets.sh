#!/usr/bin/env sh
# Create the secret files the compose stacks mount (never committed: see .gitignore).
# Demo set-up: every URL uses the postgres superuser of the compose database. In production use
# separate login roles that are members of elt_owner / elt_loader (README, "Roles").
#
# Compose mounts each secret file into the containers as it is on this host (its owner and
# mode), and the containers read them as their own users (the image's `elt`, postgres, nginx):
# the files are readable by all, and this directory by its owner alone.
set -eu
cd "$(dirname "$0")/secrets"
chmod 700 .
umask 022
command -v openssl >/dev/null 2>&1 || { echo "make-secrets.sh: openssl is needed (the UI password's hash)" >&2; exit 1; }
token() { python3 -c "import secrets; print(secrets.token_urlsafe(24))"; }
password=$(token)
printf '%s' "$password" > postgres_password
printf 'postgresql://postgres:%s@postgres:5432/postgres' "$password" > warehouse_url
cp warehouse_url owner_url
cp warehouse_url dagster_url
# The Dagster UI's password, behind the compose stacks' proxy (deploy/ui-proxy/nginx.conf):
# user `elt`; the proxy keeps only its SHA-512 crypt hash.
ui=$(token)
(umask 077 && printf '%s\n' "$ui" > ui_password)
printf 'elt:%s\n' "$(printf '%s' "$ui" | openssl passwd -6 -stdin)" > ui_htpasswd
# The Celery deployment's MinIO (deploy/celery/docker-compose.yaml) and boto3's credentials file.
minio=$(token)
printf '%s' "$minio" > minio_password
printf '[default]\naws_access_key_id = elt-demo\naws_secret_access_key = %s\n' "$minio" > aws_credentials
echo "secrets written to $(pwd); the UI's user is elt, its password is in ui_password"
