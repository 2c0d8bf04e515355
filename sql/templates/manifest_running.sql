-- A dataset's rows still `running`, with their age: candidates for stale-run recovery.
SELECT id, file, partition_key, sha256, run_id, interruptions,
       extract(epoch FROM now() - started_at)::float8 AS age_seconds
FROM elt.ingestion_manifest
WHERE dataset = %(dataset)s AND status = 'running'
ORDER BY started_at, id
