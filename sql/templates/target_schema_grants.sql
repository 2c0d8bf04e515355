-- A target schema: the loader writes its tables, the reader reads them, nothing more.
GRANT USAGE ON SCHEMA {schema} TO elt_loader, elt_reader;
ALTER DEFAULT PRIVILEGES FOR ROLE elt_owner IN SCHEMA {schema}
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO elt_loader;
ALTER DEFAULT PRIVILEGES FOR ROLE elt_owner IN SCHEMA {schema}
    GRANT SELECT ON TABLES TO elt_reader;
