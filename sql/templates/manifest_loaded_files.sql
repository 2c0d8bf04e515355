-- Which of these files (each with the content it has now) a dataset has loaded already.
SELECT m.file
FROM unnest(%(files)s::text[], %(hashes)s::text[]) AS f (file, sha256)
JOIN elt.ingestion_manifest AS m
  ON m.dataset = %(dataset)s AND m.file = f.file AND m.sha256 = f.sha256
WHERE m.status = 'success'
