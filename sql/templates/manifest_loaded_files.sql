-- How many files of a dataset the manifest records as loaded (their latest attempt a success):
-- a target created now has none of their rows.
SELECT count(*)
FROM (
    SELECT DISTINCT ON (file) status
    FROM elt.ingestion_manifest
    WHERE dataset = %(dataset)s
    ORDER BY file, started_at DESC, id DESC
) AS latest
WHERE status = 'success'
