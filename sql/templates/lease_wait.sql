-- Wait for a file's lease (same key as lease_try.sql), as long as lock_timeout allows. Taken at
-- session level: it outlives the transaction that set the timeout.
SELECT pg_advisory_lock(('x' || substr(md5('elt:lease:' || %(dataset)s || '/' || %(file)s), 1, 16))::bit(64)::bigint)
