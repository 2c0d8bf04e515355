-- Carry a target table's row count forward by what this load changed. No row: count the table,
-- which was never counted, or noted a write made outside the platform since its last count
-- (migrations/0010), or cannot note them (no elt_outside_write trigger, or a disabled one) and
-- this is the run's first load of it (`within_run`: a later load of the same run carries).
UPDATE elt.target_rows
SET row_count = row_count + %(change)s, updated_at = now()
WHERE relid = %(target)s::regclass
  AND target = %(name)s  -- the oid of a dropped table may have gone to another one
  AND NOT EXISTS (SELECT FROM elt.outside_writes WHERE relid = %(target)s::regclass)
  AND (
      %(within_run)s
      OR EXISTS (
          SELECT FROM pg_catalog.pg_trigger
          WHERE tgrelid = %(target)s::regclass AND tgname = 'elt_outside_write'
            AND tgenabled <> 'D'
      )
  )
RETURNING row_count
