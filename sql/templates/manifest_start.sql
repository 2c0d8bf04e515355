-- A run takes a file: its manifest row says `running` until the upsert finishes it.
INSERT INTO elt.ingestion_manifest
    (dataset, file, partition_key, sha256, size_bytes, format, status, run_id, started_at)
VALUES
    (%(dataset)s, %(file)s, %(partition_key)s, %(sha256)s, %(size_bytes)s, %(format)s, 'running',
     %(run_id)s, now())
ON CONFLICT (dataset, file, sha256) DO UPDATE
SET status = 'running', run_id = EXCLUDED.run_id, started_at = now(), finished_at = NULL,
    error = NULL, partition_key = EXCLUDED.partition_key, duplicate_of = NULL,
    rows_read = NULL, rows_staged = NULL, rows_quarantined = NULL,
    rows_inserted = NULL, rows_updated = NULL, rows_unchanged = NULL
RETURNING id
