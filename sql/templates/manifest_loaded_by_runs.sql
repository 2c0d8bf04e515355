-- The files these runs loaded (`success`, recorded by the run) whose present manifest row is
-- still that load: what a run that died between a load's commit and its report leaves
-- unreported. A newer content of the file, loaded or not since, is the file's story now.
-- After the file and its partition key, the columns of manifest_contents.sql (load.py Recorded).
SELECT m.file, m.partition_key, m.status, m.rows_staged, m.duplicate_key_rows,
       coalesce((m.stage_report -> 'counts' ->> 'keys_in_order')::boolean, false),
       m.rows_inserted, m.run_id,
       coalesce((m.stage_report ->> 'straight_to_target')::boolean, false),
       m.rows_updated, m.rows_unchanged, m.rows_closed, m.rows_replaced, m.id
FROM elt.ingestion_manifest AS m
WHERE m.dataset = %(dataset)s AND m.run_id = ANY(%(run_ids)s) AND m.status = 'success'
  AND NOT EXISTS (
      SELECT FROM elt.ingestion_manifest AS newer
      WHERE newer.dataset = m.dataset AND newer.file = m.file
        AND (newer.started_at, newer.id) > (m.started_at, m.id)
  )
ORDER BY m.finished_at, m.id
