-- A file is staged again: its previous slice goes, and its open quarantine rows are superseded
-- (resolved by this run), never duplicated.
WITH resolved AS (
    UPDATE elt.quarantine
    SET resolved_at = now(), resolved_by_run_id = %(run_id)s
    WHERE dataset = %(dataset)s AND file = %(file)s AND resolved_at IS NULL
)
DELETE FROM {table} WHERE _elt_file = %(file)s
