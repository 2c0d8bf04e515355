-- Explicit loader grants on a new table, in case it was not created by elt_owner itself.
GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO elt_loader
