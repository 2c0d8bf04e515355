-- Files of these datasets that failed, or loaded with at least their threshold of quarantined
-- rows, since a time (the alert watch's; it reads again from a while before, the outbox drops
-- what it already has).
SELECT m.dataset, m.file, m.sha256, m.status, m.error, m.interruptions, m.run_id,
       m.rows_read, m.rows_quarantined, m.rows_inserted, m.rows_updated
FROM unnest(%(datasets)s::text[], %(thresholds)s::bigint[]) AS d(dataset, quarantine_rows)
JOIN elt.ingestion_manifest AS m ON m.dataset = d.dataset
WHERE m.finished_at > %(since)s
  AND (m.status = 'failed' OR (m.status = 'success' AND m.rows_quarantined >= d.quarantine_rows))
ORDER BY m.finished_at, m.id
