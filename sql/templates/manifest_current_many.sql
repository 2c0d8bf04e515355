-- Each of these files' most recent attempt (manifest_current.sql for many files at once: what a
-- batch's group of small files is staged from).
SELECT DISTINCT ON (file) file, sha256, rows_staged, status, error, id
FROM elt.ingestion_manifest
WHERE dataset = %(dataset)s AND file = ANY(%(files)s::text[]) AND status <> 'duplicate'
ORDER BY file, started_at DESC, id DESC
