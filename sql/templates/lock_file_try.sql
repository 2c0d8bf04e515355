-- The file's lock (same key as lock_files.sql) only if it is free: a held lock means a
-- live transaction is writing the file's staging slice or loading it (held until it ends).
SELECT pg_try_advisory_xact_lock(hashtext('elt:file'), hashtext(%(dataset)s || '/' || %(file)s))
