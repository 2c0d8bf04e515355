-- Carry a target table's row count forward by what this load changed. No row: never counted, or
-- the table cannot note outside writes (no elt_outside_write trigger, or it is disabled), or a
-- write outside the platform was noted since the last count (migrations/0010): count it then.
UPDATE elt.target_rows
SET row_count = row_count + %(change)s, updated_at = now()
WHERE relid = %(target)s::regclass
  AND EXISTS (
      SELECT FROM pg_catalog.pg_trigger
      WHERE tgrelid = %(target)s::regclass AND tgname = 'elt_outside_write' AND tgenabled <> 'D'
  )
  AND NOT EXISTS (SELECT FROM elt.outside_writes WHERE relid = %(target)s::regclass)
RETURNING row_count
