SELECT id, dataset, file, partition_key, sha256, size_bytes, format, status, rows_read,
       rows_staged, rows_quarantined, rows_inserted, rows_updated, rows_unchanged, run_id,
       started_at, finished_at, error, duplicate_of, duplicate_key_rows
FROM elt.ingestion_manifest
WHERE dataset = %(dataset)s AND file = %(file)s AND sha256 = %(sha256)s
