-- Hand one object to elt_owner ({kind} is SCHEMA, TABLE, SEQUENCE or FUNCTION, from a fixed list).
ALTER {kind} {name} OWNER TO elt_owner
