-- elt_loader may connect and create temporary tables.
GRANT CONNECT, TEMPORARY ON DATABASE {database} TO elt_loader
