-- Count a target table and forget the outside writes noted before it, in one statement: one
-- snapshot, so a write committed after the count keeps its note and is counted next time.
WITH seen AS (
    DELETE FROM elt.outside_writes WHERE relid = %(target)s::regclass
)
SELECT count(*) FROM {table}
