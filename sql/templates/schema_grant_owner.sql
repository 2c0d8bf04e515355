-- Let elt_owner create (and own) tables in a target schema that another role owns.
GRANT USAGE, CREATE ON SCHEMA {schema} TO elt_owner
