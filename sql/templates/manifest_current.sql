-- The file's most recent attempt (what the target step loads).
SELECT sha256, rows_staged, status, error
FROM elt.ingestion_manifest
WHERE dataset = %(dataset)s AND file = %(file)s AND status <> 'duplicate'
ORDER BY started_at DESC, id DESC
LIMIT 1
