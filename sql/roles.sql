-- Group roles of the platform. NOLOGIN: people and services get them through membership.
--   elt_owner  owns the platform schemas and every table (migrations, CREATE TABLE for contracts)
--   elt_loader the runtime: reads and writes staging and targets, adds to and updates the manifest
--              and the quarantine (never deletes from them); nothing else
--   elt_reader reads the target tables, the manifest and the quarantine; never staging
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'elt_owner') THEN
        CREATE ROLE elt_owner NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'elt_loader') THEN
        CREATE ROLE elt_loader NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'elt_reader') THEN
        CREATE ROLE elt_reader NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE;
    END IF;
END
$$;
