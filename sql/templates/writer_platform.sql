-- This transaction writes a target as the platform: its trigger notes no outside write
-- (migrations/0010). Local to the transaction, so a connection pooler's next client is not it.
SELECT pg_catalog.set_config('elt.writer', 'platform', true)
