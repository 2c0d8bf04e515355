-- The manifest rows of these files, each for the content it has now (arrays: one element per
-- file): what a batch asks before taking its files and before loading them.
SELECT m.file, m.status, m.rows_staged, m.duplicate_key_rows,
       coalesce((m.stage_report -> 'counts' ->> 'keys_in_order')::boolean, false),
       m.rows_inserted, m.run_id,
       coalesce((m.stage_report ->> 'straight_to_target')::boolean, false),
       m.rows_updated, m.rows_unchanged, m.rows_closed, m.rows_replaced, m.id
FROM unnest(%(files)s::text[], %(hashes)s::text[]) AS f (file, sha256)
JOIN elt.ingestion_manifest AS m
  ON m.dataset = %(dataset)s AND m.file = f.file AND m.sha256 = f.sha256
