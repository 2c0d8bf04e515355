-- Take the leases of these files (see elt_assets/postgres/lease.py) where they are free: each a
-- session-level advisory lock, held until released or until the session ends. The key is 64 bits
-- of md5(dataset/file). Returns each file and whether this session now holds its lease.
SELECT f, pg_try_advisory_lock(('x' || substr(md5('elt:lease:' || %(dataset)s || '/' || f), 1, 16))::bit(64)::bigint)
FROM unnest(%(files)s::text[]) AS f
