-- elt_owner may create schemas in the warehouse database.
GRANT CREATE, CONNECT, TEMPORARY ON DATABASE {database} TO elt_owner
