-- Files are staged again: their previous slices go (whichever of their contents each was, so by
-- every load of the file the manifest knows), and their open quarantine rows are superseded
-- (resolved by this run), never duplicated.
WITH resolved AS (
    UPDATE elt.quarantine
    SET resolved_at = now(), resolved_by_run_id = %(run_id)s
    WHERE dataset = %(dataset)s AND file = ANY(%(files)s) AND resolved_at IS NULL
)
DELETE FROM {table}
WHERE _elt_load IN (
    SELECT id FROM elt.ingestion_manifest WHERE dataset = %(dataset)s AND file = ANY(%(files)s)
)
