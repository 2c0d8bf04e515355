-- The time zone for values without an offset, for the current transaction only.
SELECT set_config('TimeZone', %(timezone)s, true)
