-- Files are staged again: their previous slices go (whichever of their contents each was, so by
-- every load of the file the manifest knows). Their open quarantine rows are superseded apart
-- (quarantine_supersede.sql): a big file's slice is written on another connection than its
-- quarantine rows (postgres/staging.py `_stage_and_upsert`).
DELETE FROM {table}
WHERE _elt_load IN (
    SELECT id FROM elt.ingestion_manifest WHERE dataset = %(dataset)s AND file = ANY(%(files)s)
)
