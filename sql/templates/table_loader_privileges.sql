-- What the role that loads (the one given, else the connected role) may do with a target: use
-- its schema, and read and write the table. A table the platform did not create has only the
-- grants its owner gave. By OID: naming a schema the connected role may not use is refused.
SELECT has_schema_privilege(who.role, n.oid, 'USAGE'),
       has_table_privilege(who.role, c.oid, 'SELECT'),
       has_table_privilege(who.role, c.oid, 'INSERT'),
       has_table_privilege(who.role, c.oid, 'UPDATE'),
       has_table_privilege(who.role, c.oid, 'DELETE')
FROM pg_catalog.pg_class AS c
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
CROSS JOIN (SELECT COALESCE(%(role)s::text, current_user) AS role) AS who
WHERE n.nspname = %(schema)s AND c.relname = %(table)s
