GRANT CONNECT ON DATABASE {database} TO elt_reader
