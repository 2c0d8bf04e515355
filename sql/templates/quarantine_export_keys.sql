-- Every field name in the raw_record of the rows `quarantine_export` returns (the CSV header).
SELECT DISTINCT k.key
FROM elt.quarantine AS q
CROSS JOIN LATERAL jsonb_object_keys(q.raw_record) AS k(key)
WHERE q.dataset = %(dataset)s
  AND (%(file)s::text IS NULL OR q.file = %(file)s::text)
  AND (%(include_resolved)s OR q.resolved_at IS NULL)
ORDER BY k.key
