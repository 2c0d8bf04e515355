-- May the connected role alter the platform's tables: it owns the schema `elt` (single-role mode)
-- or may act as elt_owner? (A superuser may do anything; that is checked on its own.)
SELECT EXISTS (
           SELECT FROM pg_catalog.pg_namespace
           WHERE nspname = 'elt'
             AND pg_catalog.pg_has_role(current_user, nspowner, 'MEMBER'))
       OR (EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'elt_owner')
           AND pg_catalog.pg_has_role(current_user, 'elt_owner', 'MEMBER'))
