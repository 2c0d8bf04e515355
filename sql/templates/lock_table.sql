-- Serialise the upsert phase per target table: parallel COPYs, one writer per table.
SELECT pg_advisory_xact_lock(hashtext('elt:table'), hashtext(%(table)s))
