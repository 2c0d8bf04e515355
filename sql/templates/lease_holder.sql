-- The session holding a file's lease (same key as lease_try.sql), for messages. A 64-bit advisory
-- key shows in pg_locks as classid (high 32 bits) and objid (low 32 bits), objsubid 1.
SELECT coalesce(a.application_name, ''), coalesce(host(a.client_addr), ''), a.pid,
       coalesce(to_char(a.backend_start, 'YYYY-MM-DD HH24:MI:SS TZ'), '?')
FROM pg_catalog.pg_locks l
JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
  AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())
  AND ((l.classid::bigint << 32) | l.objid::bigint) = ('x' || substr(md5('elt:lease:' || %(dataset)s || '/' || %(file)s), 1, 16))::bit(64)::bigint
LIMIT 1
