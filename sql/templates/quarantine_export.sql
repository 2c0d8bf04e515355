-- The quarantined rows of a dataset (of one file when %(file)s is set) for `elt quarantine
-- export`: open rows, or all of them with %(include_resolved)s. `fields` is raw_record with every
-- value as text exactly as stored (a number keeps its spelling). Read through a server-side cursor.
SELECT q.file,
       q.row_number,
       q.column_name,
       q.check_name,
       q.reason,
       to_char(q.resolved_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS resolved_at,
       (SELECT jsonb_object_agg(f.key, f.value) FROM jsonb_each_text(q.raw_record) AS f) AS fields
FROM elt.quarantine AS q
WHERE q.dataset = %(dataset)s
  AND (%(file)s::text IS NULL OR q.file = %(file)s::text)
  AND (%(include_resolved)s OR q.resolved_at IS NULL)
ORDER BY q.file, q.row_number, q.quarantined_at, q.id
