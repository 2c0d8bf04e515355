-- Privileges of the group roles on the platform schemas. Idempotent; run by every `elt db init`
-- as elt_owner, after the migrations. Target schemas get theirs when their table is created
-- (templates/target_schema_grants.sql).
GRANT USAGE ON SCHEMA elt, elt_staging TO elt_loader;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA elt_staging TO elt_loader;
-- The manifest and the quarantine are the platform's history: the runtime adds to them and
-- updates them, it never deletes from them (REVOKE: databases initialised before granted it).
GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA elt TO elt_loader;
REVOKE DELETE, TRUNCATE ON ALL TABLES IN SCHEMA elt FROM elt_loader;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA elt TO elt_loader;
-- Its deletes: the outside writes a count has seen (migrations/0010), and the row count of a
-- target that was dropped and created again (elt.target_rows holds counts, no history).
GRANT DELETE ON elt.outside_writes, elt.target_rows TO elt_loader;
REVOKE ALL ON elt.schema_migrations FROM elt_loader;
GRANT SELECT ON elt.schema_migrations TO elt_loader;
ALTER DEFAULT PRIVILEGES FOR ROLE elt_owner IN SCHEMA elt_staging
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO elt_loader;
-- The reader sees what was loaded and which rows were rejected, never staging.
GRANT USAGE ON SCHEMA elt TO elt_reader;
GRANT SELECT ON elt.ingestion_manifest, elt.quarantine, elt.schema_versions TO elt_reader;
-- Schema evolution's one door (migrations/0007): add or widen a column of a dataset's tables.
GRANT EXECUTE ON FUNCTION elt.evolve_column(text, text, text, text, text) TO elt_loader;
