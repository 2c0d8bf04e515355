-- A file's open quarantine rows, counted by PostgreSQL in the staging transaction.
SELECT count(*) FROM elt.quarantine
WHERE dataset = %(dataset)s AND file = %(file)s AND resolved_at IS NULL
