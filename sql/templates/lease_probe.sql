-- For each file, whether its lease is free (same key as lease_try.sql). Run in a transaction: the
-- transaction-level locks it takes on free leases end with it.
SELECT f, pg_try_advisory_xact_lock(
    ('x' || substr(md5('elt:lease:' || %(dataset)s || '/' || f), 1, 16))::bit(64)::bigint)
FROM unnest(%(files)s::text[]) AS f
