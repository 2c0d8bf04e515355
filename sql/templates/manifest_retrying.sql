-- A transient problem (connection lost, server restarting) that the step's RetryPolicy retries:
-- the attempt goes on, so the row stays `running` and only says why it is slow. If the retries run
-- out, the run ends with the row `running`, and stale-run recovery (elt_assets/defs/recovery.py) marks it
-- `interrupted` and loads the file again.
UPDATE elt.ingestion_manifest
SET error = %(error)s
WHERE dataset = %(dataset)s AND file = %(file)s AND sha256 = %(sha256)s AND status = 'running'
