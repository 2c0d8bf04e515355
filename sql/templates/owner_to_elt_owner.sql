-- Hand one object to elt_owner ({kind} is SCHEMA, TABLE or SEQUENCE, from a fixed list).
ALTER {kind} {name} OWNER TO elt_owner
