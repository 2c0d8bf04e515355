-- A target table's row count, counted by this load (count(*), or an empty table's first load).
-- A row of a table of the same name that was dropped (another relid) goes: its oid may be
-- given to another table one day, which must not inherit its count.
WITH dropped AS (
    DELETE FROM elt.target_rows
    WHERE target = %(name)s AND relid <> %(target)s::regclass
)
INSERT INTO elt.target_rows AS t (relid, target, row_count, counted_at)
VALUES (%(target)s::regclass, %(name)s, %(row_count)s, now())
ON CONFLICT (relid) DO UPDATE
SET target = EXCLUDED.target, row_count = EXCLUDED.row_count, counted_at = now(),
    updated_at = now()
