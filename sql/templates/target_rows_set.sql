-- A target table's row count, counted by this load (count(*), or an empty table's first load).
INSERT INTO elt.target_rows AS t (relid, target, row_count, counted_at)
VALUES (%(target)s::regclass, %(target)s, %(row_count)s, now())
ON CONFLICT (relid) DO UPDATE
SET target = EXCLUDED.target, row_count = EXCLUDED.row_count, counted_at = now(),
    updated_at = now()
