SELECT pg_advisory_unlock(hashtext('elt:init'))
