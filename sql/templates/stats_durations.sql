-- Finished loads per dataset and duration bucket (1-based index into %(bounds)s, beyond its
-- end for the slowest), with the newest success's age: the histogram and freshness metrics.
SELECT dataset,
       width_bucket(seconds, %(bounds)s::float8[]) AS bucket,
       count(*) AS loads,
       sum(seconds) AS seconds,
       extract(epoch FROM now() - max(finished_at))::float8 AS newest_age_seconds
FROM (SELECT dataset, finished_at,
             extract(epoch FROM finished_at - started_at)::float8 AS seconds
      FROM elt.ingestion_manifest
      WHERE status = 'success' AND finished_at IS NOT NULL) AS loads
GROUP BY dataset, bucket
