-- The newest manifest row of each of these files of a dataset (the content last taken).
SELECT DISTINCT ON (file)
       dataset, file, sha256, status, error, interruptions, run_id,
       rows_read, rows_quarantined, rows_inserted, rows_updated
FROM elt.ingestion_manifest
WHERE dataset = %(dataset)s AND file = ANY(%(files)s)
ORDER BY file, started_at DESC, id DESC
