-- The dataset's latest schema version: the columns its files added and widened so far.
SELECT version, added, widened
FROM elt.schema_versions
WHERE dataset = %(dataset)s
ORDER BY version DESC
LIMIT 1
