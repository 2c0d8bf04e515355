SET ROLE elt_owner
