-- Success, written in the same transaction as the target upsert.
UPDATE elt.ingestion_manifest
SET status = 'success', finished_at = now(), error = NULL, run_id = %(run_id)s,
    rows_inserted = %(rows_inserted)s, rows_updated = %(rows_updated)s,
    rows_unchanged = %(rows_unchanged)s, rows_closed = %(rows_closed)s,
    rows_replaced = %(rows_replaced)s
WHERE dataset = %(dataset)s AND file = %(file)s AND sha256 = %(sha256)s
