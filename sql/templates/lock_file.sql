-- Serialise work on one file of one dataset (held until the transaction ends).
SELECT pg_advisory_xact_lock(hashtext('elt:file'), hashtext(%(dataset)s || '/' || %(file)s))
