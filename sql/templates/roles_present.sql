-- Which of the platform's group roles exist in this cluster.
SELECT rolname FROM pg_catalog.pg_roles WHERE rolname = ANY(%(roles)s)
