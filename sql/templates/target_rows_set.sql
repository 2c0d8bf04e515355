-- A target table's row count, counted by this load (count(*), or an empty table's first load).
-- What is known of dropped tables goes: the row of a table of the same name that was dropped
-- (another relid), and the counts and outside-write notes of any table that no longer exists;
-- an oid may be given to another table one day, which must not inherit them.
WITH dropped AS (
    DELETE FROM elt.target_rows AS r
    WHERE (r.target = %(name)s AND r.relid <> %(target)s::regclass)
       OR NOT EXISTS (SELECT FROM pg_catalog.pg_class AS c WHERE c.oid = r.relid)
), dropped_notes AS (
    DELETE FROM elt.outside_writes AS w
    WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_class AS c WHERE c.oid = w.relid)
)
INSERT INTO elt.target_rows AS t (relid, target, row_count, counted_at)
VALUES (%(target)s::regclass, %(name)s, %(row_count)s, now())
ON CONFLICT (relid) DO UPDATE
SET target = EXCLUDED.target, row_count = EXCLUDED.row_count, counted_at = now(),
    updated_at = now()
