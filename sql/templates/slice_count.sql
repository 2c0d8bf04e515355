SELECT count(*) FROM {table} WHERE _elt_file = %(file)s
