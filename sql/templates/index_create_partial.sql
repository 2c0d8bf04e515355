-- An index on part of a table (e.g. a history table's current versions).
CREATE INDEX IF NOT EXISTS {name} ON {table} ({columns}) WHERE {condition}
