-- Make the connected role (a CREATEROLE role that created the group roles) a member of elt_owner.
GRANT elt_owner TO CURRENT_USER
