-- Bookkeeping of applied migrations (created before the first migration runs).
CREATE SCHEMA IF NOT EXISTS elt;
CREATE TABLE IF NOT EXISTS elt.schema_migrations (
    version    integer     PRIMARY KEY,
    name       text        NOT NULL,
    sha256     text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
