-- Give a file's lease back (same key as lease_try.sql).
SELECT pg_advisory_unlock(('x' || substr(md5('elt:lease:' || %(dataset)s || '/' || %(file)s), 1, 16))::bit(64)::bigint)
