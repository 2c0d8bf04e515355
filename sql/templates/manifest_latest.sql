-- The most recent manifest row of each file of a dataset (what `elt ingest` reports).
SELECT DISTINCT ON (file)
       dataset, file, partition_key, sha256, status, rows_read, rows_staged, rows_quarantined,
       rows_inserted, rows_updated, rows_unchanged, error, duplicate_of, run_id, started_at
FROM elt.ingestion_manifest
WHERE dataset = %(dataset)s
ORDER BY file, started_at DESC, id DESC
