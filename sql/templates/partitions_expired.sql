-- Partition keys of the dataset's files whose latest attempt ended (loaded, failed or a
-- duplicate) more than the partition retention ago. A file being loaded again has a newer
-- attempt and keeps its partition.
WITH latest AS (
    SELECT DISTINCT ON (file) partition_key, status, finished_at
    FROM elt.ingestion_manifest
    WHERE dataset = %(dataset)s
    ORDER BY file, started_at DESC, id DESC
)
SELECT partition_key FROM latest
WHERE status IN ('success', 'failed', 'duplicate')
  AND finished_at < now() - make_interval(days => %(days)s)
