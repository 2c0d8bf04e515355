-- The table's writer lock (lock_table) if it is free now: true when taken, false when another
-- load of the table holds it.
SELECT pg_try_advisory_xact_lock(hashtext('elt:table'), hashtext(%(table)s))
