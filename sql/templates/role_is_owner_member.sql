-- May the connected role act as elt_owner (a member of it, or a superuser)?
SELECT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'elt_owner')
   AND pg_catalog.pg_has_role(current_user, 'elt_owner', 'MEMBER')
