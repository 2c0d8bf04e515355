-- Does the platform run with separate roles? True when its schema belongs to elt_owner; in
-- single-role mode it belongs to the one role that owns and loads.
SELECT COALESCE((
    SELECT n.nspowner = r.oid
    FROM pg_catalog.pg_namespace n, pg_catalog.pg_roles r
    WHERE n.nspname = 'elt' AND r.rolname = 'elt_owner'
), false)
