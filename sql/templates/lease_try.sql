-- Take a file's lease (see elt_assets/postgres/lease.py) if it is free: a session-level advisory
-- lock, held until released or until the session ends. The key is 64 bits of md5(dataset/file).
SELECT pg_try_advisory_lock(('x' || substr(md5('elt:lease:' || %(dataset)s || '/' || %(file)s), 1, 16))::bit(64)::bigint)
