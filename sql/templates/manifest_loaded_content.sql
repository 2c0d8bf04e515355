-- Which of these contents a dataset has already loaded, and from which file.
SELECT DISTINCT ON (sha256) sha256, file
FROM elt.ingestion_manifest
WHERE dataset = %(dataset)s AND status = 'success' AND sha256 = ANY(%(hashes)s)
ORDER BY sha256, finished_at
