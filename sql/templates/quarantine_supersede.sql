-- Files are staged again: their open quarantine rows are superseded (resolved by this run), never
-- duplicated, in the transaction that writes their new ones.
UPDATE elt.quarantine
SET resolved_at = now(), resolved_by_run_id = %(run_id)s
WHERE dataset = %(dataset)s AND file = ANY(%(files)s) AND resolved_at IS NULL
