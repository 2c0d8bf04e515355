-- Whether the platform's migration bookkeeping exists (the platform was set up at least once).
SELECT to_regclass('elt.schema_migrations') IS NOT NULL
