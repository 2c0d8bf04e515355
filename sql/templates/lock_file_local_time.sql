-- The staging transaction's start: serialise work on one file of one dataset (held until the
-- transaction ends), and read values without an offset in the contract's time zone.
SELECT pg_advisory_xact_lock(hashtext('elt:file'), hashtext(%(dataset)s || '/' || %(file)s)),
       set_config('TimeZone', %(timezone)s, true)
