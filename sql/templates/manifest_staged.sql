-- The staged step's counts and report (same transaction as the staging slice and the quarantine
-- rows).
UPDATE elt.ingestion_manifest
SET rows_read = %(rows_read)s, rows_staged = %(rows_staged)s,
    rows_quarantined = %(rows_quarantined)s, duplicate_key_rows = %(duplicate_key_rows)s,
    stage_report = %(stage_report)s
WHERE dataset = %(dataset)s AND file = %(file)s AND sha256 = %(sha256)s
