-- A file failed; the error names the file and, where known, line and column.
UPDATE elt.ingestion_manifest
SET status = 'failed', finished_at = now(), error = %(error)s, run_id = %(run_id)s
WHERE dataset = %(dataset)s AND file = %(file)s AND sha256 = %(sha256)s
