-- Each dataset's newest successful load, and how long ago it committed (datasets with none
-- are left out).
SELECT d.dataset, n.finished_at, extract(epoch FROM now() - n.finished_at)::float8
FROM unnest(%(datasets)s::text[]) AS d(dataset)
CROSS JOIN LATERAL (
    SELECT max(m.finished_at) AS finished_at
    FROM elt.ingestion_manifest AS m
    WHERE m.dataset = d.dataset AND m.status = 'success'
) AS n
WHERE n.finished_at IS NOT NULL
