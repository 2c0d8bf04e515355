-- A new schema version of a dataset (under the DDL lock: versions never collide).
INSERT INTO elt.schema_versions (dataset, version, added, widened, columns, change, file)
SELECT %(dataset)s, COALESCE(max(version), 0) + 1, %(added)s, %(widened)s, %(columns)s,
       %(change)s, %(file)s
FROM elt.schema_versions
WHERE dataset = %(dataset)s
