-- Whether a target table notes writes made outside the platform (migrations/0010).
SELECT EXISTS (
    SELECT FROM pg_catalog.pg_trigger
    WHERE tgrelid = %(target)s::regclass AND tgname = 'elt_outside_write' AND tgenabled <> 'D'
)
