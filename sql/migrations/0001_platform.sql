-- The platform's own schemas and tables.
CREATE SCHEMA IF NOT EXISTS elt;
CREATE SCHEMA IF NOT EXISTS elt_staging;  -- one UNLOGGED table per dataset, sliced by file

-- One row per (dataset, file, content). The row of a file is finished (success / failed) in the
-- same transaction as the target upsert, so `success` always means "in the target".
CREATE TABLE elt.ingestion_manifest (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    dataset          text        NOT NULL,
    file             text        NOT NULL,  -- path relative to the landing root
    partition_key    text        NOT NULL,
    sha256           text        NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    size_bytes       bigint      NOT NULL CHECK (size_bytes >= 0),
    format           text        NOT NULL CHECK (format IN ('csv', 'parquet')),
    status           text        NOT NULL
                     CHECK (status IN ('running', 'success', 'failed', 'duplicate')),
    rows_read        bigint,
    rows_staged      bigint,
    rows_quarantined bigint,
    rows_inserted    bigint,
    rows_updated     bigint,
    rows_unchanged   bigint,
    run_id           text,
    started_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz,
    error            text,
    duplicate_of     text,  -- for status = duplicate: the file that already brought this content
    UNIQUE (dataset, file, sha256)
);
CREATE INDEX ingestion_manifest_loaded_content
    ON elt.ingestion_manifest (dataset, sha256) WHERE status = 'success';
CREATE INDEX ingestion_manifest_running
    ON elt.ingestion_manifest (started_at) WHERE status = 'running';

-- One row per rejected row of a file, with every reason and the original field values.
-- Re-evaluating a file marks its open rows resolved; a row is never open twice.
CREATE TABLE elt.quarantine (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    dataset            text        NOT NULL,
    file               text        NOT NULL,
    sha256             text        NOT NULL,
    row_number         bigint      NOT NULL,  -- 1-based data row in the file, header not counted
    column_name        text,                  -- first failing column
    check_name         text        NOT NULL,  -- first failing check, e.g. type:bigint, isin
    reason             text        NOT NULL,
    failures           jsonb       NOT NULL,  -- every failure: [{column, check, reason}]
    raw_record         jsonb       NOT NULL,  -- the row's fields as written in the file
    run_id             text,
    quarantined_at     timestamptz NOT NULL DEFAULT now(),
    resolved_at        timestamptz,
    resolved_by_run_id text
);
CREATE UNIQUE INDEX quarantine_open_row
    ON elt.quarantine (dataset, file, row_number) WHERE resolved_at IS NULL;

-- What the file sensor has seen: size and mtime per tick (the stable-file rule) and the content
-- hash it last sent to a run. Keeps the sensor's cursor small whatever the number of files.
CREATE TABLE elt.landing_files (
    dataset           text        NOT NULL,
    file              text        NOT NULL,
    size_bytes        bigint      NOT NULL,
    mtime_ns          bigint      NOT NULL,
    seen_at           timestamptz NOT NULL DEFAULT now(),
    sha256            text,
    hashed_size_bytes bigint,
    hashed_mtime_ns   bigint,
    requested_at      timestamptz,
    PRIMARY KEY (dataset, file)
);
