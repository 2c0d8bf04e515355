-- Note writes to a target made outside the platform (migrations/0010): one call per statement.
CREATE TRIGGER elt_outside_write AFTER INSERT OR DELETE OR TRUNCATE ON {table}
FOR EACH STATEMENT EXECUTE FUNCTION elt.note_outside_write()
