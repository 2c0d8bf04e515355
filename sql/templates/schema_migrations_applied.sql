-- The migrations already applied, with the checksum each had then.
SELECT version, name, sha256 FROM elt.schema_migrations ORDER BY version
