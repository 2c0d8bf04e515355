-- The load's start: one writer per target table (parallel COPYs into staging, one upsert at a
-- time), then the file's own lock (same key as lock_file_local_time.sql); both until the end of
-- the transaction, always in this order.
SELECT pg_advisory_xact_lock(hashtext('elt:table'), hashtext(%(table)s)),
       pg_advisory_xact_lock(hashtext('elt:file'), hashtext(%(dataset)s || '/' || %(file)s))
