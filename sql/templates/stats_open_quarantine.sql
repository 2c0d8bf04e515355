-- Quarantined rows nobody has resolved yet, per dataset (the partial index quarantine_open_row).
SELECT dataset, count(*) FROM elt.quarantine WHERE resolved_at IS NULL GROUP BY dataset
