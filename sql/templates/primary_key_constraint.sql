-- The name of the table's valid primary key constraint, if it has one.
SELECT con.conname
FROM pg_catalog.pg_constraint con
JOIN pg_catalog.pg_class c ON c.oid = con.conrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_index i ON i.indexrelid = con.conindid
WHERE n.nspname = %(schema)s AND c.relname = %(table)s AND con.contype = 'p' AND i.indisvalid
