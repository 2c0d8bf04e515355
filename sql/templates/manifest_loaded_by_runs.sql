-- The files these runs loaded (`success`, recorded by the run) whose present manifest row is
-- still that load: what a run that died between a load's commit and its report leaves
-- unreported. A newer content of the file, loaded or not since, is the file's story now.
SELECT m.run_id, m.file, m.partition_key, m.rows_staged, m.rows_inserted, m.rows_updated,
       m.rows_unchanged, m.rows_closed, m.rows_replaced,
       coalesce((m.stage_report ->> 'straight_to_target')::boolean, false)
FROM elt.ingestion_manifest AS m
WHERE m.dataset = %(dataset)s AND m.run_id = ANY(%(run_ids)s) AND m.status = 'success'
  AND NOT EXISTS (
      SELECT FROM elt.ingestion_manifest AS newer
      WHERE newer.dataset = m.dataset AND newer.file = m.file
        AND (newer.started_at, newer.id) > (m.started_at, m.id)
  )
ORDER BY m.finished_at, m.id
