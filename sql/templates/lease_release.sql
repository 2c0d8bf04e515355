-- Give these files' leases back (same key as lease_try.sql).
SELECT count(pg_advisory_unlock(('x' || substr(md5('elt:lease:' || %(dataset)s || '/' || f), 1, 16))::bit(64)::bigint))
FROM unnest(%(files)s::text[]) AS f
