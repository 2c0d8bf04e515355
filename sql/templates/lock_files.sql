-- Serialise work on each of these files of a dataset (one key per file, held until the
-- transaction ends), taken in name order, so that two transactions holding several files never
-- wait for each other in a circle. A load takes its table's lock (lock_table.sql) first.
SELECT count(pg_advisory_xact_lock(hashtext('elt:file'), hashtext(%(dataset)s || '/' || f)))
FROM (SELECT f FROM unnest(%(files)s::text[]) AS f ORDER BY f) AS files
