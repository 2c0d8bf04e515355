-- A file's staged rows and open quarantine rows, counted by PostgreSQL in the staging transaction.
SELECT (SELECT count(*) FROM {table} WHERE _elt_file = %(file)s),
       (SELECT count(*) FROM elt.quarantine
        WHERE dataset = %(dataset)s AND file = %(file)s AND resolved_at IS NULL)
