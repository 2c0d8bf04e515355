-- One `elt db init` at a time (containers starting together); held until unlock_init.
SELECT pg_advisory_lock(hashtext('elt:init'))
