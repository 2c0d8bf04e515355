# syntax=docker/dockerfile:1
# One image for every role of a production deployment (commands at the end). Built from the lock
# file; runs as a non-root user. Dagster's storage and the warehouse are external PostgreSQL
# servers given by ELT_DAGSTER_DATABASE_URL and ELT_DATABASE_URL (or their *_FILE secrets).

FROM python:3.11-slim-bookworm AS build
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never UV_PROJECT_ENVIRONMENT=/app/.venv
RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /src
# Dependencies first, so code changes do not reinstall them.
COPY pyproject.toml uv.lock README.md ./
# platform: the UI and the embedded server; k8s and celery: the run launchers of deploy/.
RUN uv sync --locked --no-dev --extra platform --extra k8s --extra celery --no-install-project
COPY elt_assets ./elt_assets
COPY sql ./sql
# The wheel also carries the sample datasets and the instance config (what `elt dev` runs).
COPY examples ./examples
COPY dagster.yaml workspace.yaml ./
RUN uv sync --locked --no-dev --extra platform --extra k8s --extra celery --no-editable

FROM python:3.11-slim-bookworm AS runtime
RUN groupadd --gid 10001 elt \
 && useradd --uid 10001 --gid elt --create-home --shell /usr/sbin/nologin elt \
 && mkdir -p /opt/dagster/home /opt/dagster/celery /data/landing /data/contracts \
 && chown -R elt:elt /opt/dagster /data
COPY --from=build /app/.venv /app/.venv
COPY workspace.yaml /app/workspace.yaml
COPY dagster.yaml /opt/dagster/home/dagster.yaml
# The Celery deployment's instance: its containers set DAGSTER_HOME=/opt/dagster/celery.
COPY deploy/celery/dagster.yaml /opt/dagster/celery/dagster.yaml
COPY deploy/celery/workspace.yaml /app/deploy/celery/workspace.yaml
COPY examples/contracts /data/contracts
ENV PATH=/app/.venv/bin:$PATH \
    DAGSTER_HOME=/opt/dagster/home \
    ELT_LANDING_DIR=/data/landing \
    ELT_CONTRACTS_DIR=/data/contracts \
    ELT_STATE_DIR=/tmp/elt \
    ELT_LOG_FORMAT=json \
    ELT_REFUSE_SUPERUSER=true
USER elt
WORKDIR /app
EXPOSE 3000
# `elt exec --` checks the settings, resolves *_FILE secrets, then runs the command:
#   web UI:      docker run IMAGE dagster-webserver -h 0.0.0.0 -p 3000 -w /app/workspace.yaml
#   daemon:      docker run IMAGE dagster-daemon run -w /app/workspace.yaml
#   set-up once: docker run IMAGE elt db init
#   headless:    docker run IMAGE elt ingest --json
#   code server: docker run IMAGE dagster code-server start -m elt_assets.definitions -h 0.0.0.0 -p 4000
#   worker:      docker run IMAGE elt worker        (Celery deployment, deploy/celery)
#   metrics:     docker run IMAGE elt metrics --host 0.0.0.0 --port 9464   (for Prometheus)
ENTRYPOINT ["elt", "exec", "--"]
CMD ["dagster-webserver", "-h", "0.0.0.0", "-p", "3000", "-w", "/app/workspace.yaml"]
