-- Should DDL switch to elt_owner (SET ROLE), so that what it creates belongs to elt_owner?
SELECT current_user <> 'elt_owner'
   AND EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'elt_owner')
   AND pg_catalog.pg_has_role(current_user, 'elt_owner', 'MEMBER')
