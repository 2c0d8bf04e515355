-- A file is being evaluated again: its open quarantine rows are superseded, never duplicated.
UPDATE elt.quarantine
SET resolved_at = now(), resolved_by_run_id = %(run_id)s
WHERE dataset = %(dataset)s AND file = %(file)s AND resolved_at IS NULL
