-- A column a file brought (policy.new_columns: add): nullable, so earlier rows read NULL.
ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {type}
