-- A lock timeout for the current transaction only, in milliseconds (0: wait as long as it takes).
SELECT set_config('lock_timeout', %(ms)s::text, true)
