-- What a file's load did beyond inserts and updates, recorded with them in the load's
-- transaction: the current versions a history merge closed (history.close_missing) and the rows
-- of an earlier load of the same file an append replaced. A load that died between its commit
-- and its report is reported later from the manifest (postgres/load.py `_as_recorded`), so the
-- manifest must hold all that the report says. NULL for loads recorded before this migration.
ALTER TABLE elt.ingestion_manifest
    ADD COLUMN rows_closed   bigint,
    ADD COLUMN rows_replaced bigint;
