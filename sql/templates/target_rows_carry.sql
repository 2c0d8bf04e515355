-- Carry a target table's row count forward by what this load changed (no row: never counted).
UPDATE elt.target_rows
SET row_count = row_count + %(change)s, updated_at = now()
WHERE relid = %(target)s::regclass
RETURNING row_count
