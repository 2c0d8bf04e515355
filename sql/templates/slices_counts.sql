-- Each file's staged rows (its slice: the load given with it) and open quarantine rows, counted
-- by PostgreSQL in the staging transaction.
SELECT f,
       (SELECT count(*) FROM {table} WHERE _elt_load = l),
       (SELECT count(*) FROM elt.quarantine
        WHERE dataset = %(dataset)s AND file = f AND resolved_at IS NULL)
FROM unnest(%(files)s::text[], %(loads)s::bigint[]) AS s (f, l)
