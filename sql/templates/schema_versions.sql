-- Every schema version of a dataset, oldest first.
SELECT version, added, widened, change, file
FROM elt.schema_versions
WHERE dataset = %(dataset)s
ORDER BY version
