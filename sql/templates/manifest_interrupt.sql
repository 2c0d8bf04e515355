-- The run that owns a `running` row ended without finishing the file: only if the row is still
-- that run's attempt (a new run may have taken it since it was read).
UPDATE elt.ingestion_manifest
SET status = %(status)s, finished_at = now(), error = %(error)s, interruptions = interruptions + 1
WHERE id = %(id)s AND status = 'running' AND run_id = %(run_id)s
  AND interruptions = %(interruptions)s
