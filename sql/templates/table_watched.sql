-- Whether a target table has the trigger that notes writes made outside the platform
-- (migrations/0010), enabled or not: a trigger someone disabled is left as it is.
SELECT EXISTS (
    SELECT FROM pg_catalog.pg_trigger
    WHERE tgrelid = %(target)s::regclass AND tgname = 'elt_outside_write'
)
