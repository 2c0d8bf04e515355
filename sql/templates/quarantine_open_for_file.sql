-- A file's quarantined rows that no later load of it resolved.
SELECT count(*) FROM elt.quarantine
WHERE dataset = %(dataset)s AND file = %(file)s AND resolved_at IS NULL
