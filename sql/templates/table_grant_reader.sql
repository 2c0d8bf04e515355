GRANT SELECT ON {table} TO elt_reader
