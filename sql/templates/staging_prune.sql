-- Staging slices of files whose latest attempt ended (loaded, failed or a duplicate) more than
-- the retention period ago. The landed file can always be staged again; a file that is being loaded
-- again has a newer `running` attempt, so its slice stays. One statement: its snapshot sees a new
-- attempt's manifest row whenever it sees that attempt's slice (the row is committed first).
WITH latest AS (
    SELECT DISTINCT ON (file) file, status, finished_at
    FROM elt.ingestion_manifest
    WHERE dataset = %(dataset)s
    ORDER BY file, started_at DESC, id DESC
), pruned AS (
    DELETE FROM {staging} AS s
    USING latest, elt.ingestion_manifest AS m
    WHERE m.dataset = %(dataset)s AND m.file = latest.file AND s._elt_load = m.id
      AND latest.status IN ('success', 'failed', 'duplicate')
      AND latest.finished_at < now() - make_interval(hours => %(hours)s)
    RETURNING s._elt_file
)
SELECT count(*) AS rows, count(DISTINCT _elt_file) AS files FROM pruned
