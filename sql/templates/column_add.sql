-- A column a dataset's tables lack (the rescue column of a policy that starts rescuing):
-- nullable, so earlier rows read NULL.
ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {type}
