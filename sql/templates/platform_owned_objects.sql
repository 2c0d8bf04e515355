-- What the connected role owns of the platform: its schemas `elt` and `elt_staging` with their
-- tables, sequences and functions, and the contracts' target tables. `elt db init` hands these to elt_owner
-- when a database set up in single-role mode gets its separate roles. Nothing when the connected
-- role is elt_owner itself: an ALTER ... OWNER to the same owner still locks the table.
SELECT 'SCHEMA' AS kind, n.nspname AS schema, NULL AS name
FROM pg_catalog.pg_namespace n
WHERE n.nspname IN ('elt', 'elt_staging') AND n.nspowner = (
    SELECT oid FROM pg_catalog.pg_roles WHERE rolname = current_user)
  AND current_user <> 'elt_owner'
UNION ALL
SELECT CASE c.relkind WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, n.nspname, c.relname
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'S')
  AND c.relowner = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = current_user)
  AND current_user <> 'elt_owner'
  AND (n.nspname IN ('elt', 'elt_staging')
       OR (n.nspname, c.relname) IN (
           SELECT * FROM unnest(%(target_schemas)s::text[], %(target_tables)s::text[])))
  -- identity and serial sequences change owner with their table
  AND NOT EXISTS (SELECT FROM pg_catalog.pg_depend d
                  WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                    AND d.deptype IN ('a', 'i'))
UNION ALL
SELECT 'FUNCTION', n.nspname, p.proname
FROM pg_catalog.pg_proc p
JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = 'elt'
  AND p.proowner = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = current_user)
  AND current_user <> 'elt_owner'
ORDER BY 1, 2, 3
