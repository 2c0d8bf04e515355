-- The rescue column of a dataset whose policy started rescuing (always nullable jsonb).
ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} jsonb
