-- Each file's staged rows (its slice: the load given with it) and open quarantine rows, counted
-- by PostgreSQL in the staging transaction.
-- The given names carry the platform's prefix: a staging column may be called anything else.
SELECT given._elt_file,
       (SELECT count(*) FROM {table} AS slice WHERE slice._elt_load = given._elt_load),
       (SELECT count(*) FROM elt.quarantine AS q
        WHERE q.dataset = %(dataset)s AND q.file = given._elt_file AND q.resolved_at IS NULL)
FROM unnest(%(files)s::text[], %(loads)s::bigint[]) AS given (_elt_file, _elt_load)
