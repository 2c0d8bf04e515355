-- Writes to a target table made outside the platform, so that its row count can be carried from
-- load to load instead of counted (postgres/load.py `_row_count`: a count(*) costs a scan of
-- the whole table, about 0.35 s per 10M rows when cached, on every run's first load).
--
-- Every target table the platform creates (or can, as its owner, reach later) gets a statement
-- trigger, elt_outside_write, after INSERT, DELETE and TRUNCATE. The platform's own writing
-- transactions say who they are (SET LOCAL elt.writer = 'platform'); any other transaction that
-- changes the table's rows leaves one row here, and the next load counts the table again,
-- clearing the rows it saw. A write made with triggers disabled (ALTER TABLE ... DISABLE
-- TRIGGER, session_replication_role = replica) leaves no row: the count is then carried past it
-- until a table dropped and created again is counted afresh.
CREATE TABLE elt.outside_writes (
    relid    oid         NOT NULL,                          -- the target table's pg_class oid
    xid      xid8        NOT NULL DEFAULT pg_current_xact_id(),  -- the writing transaction
    noted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (relid, xid)
);

-- Runs as the owner of the platform's tables (SECURITY DEFINER): whoever writes to a target may
-- note it, without any privilege on elt.outside_writes. It only ever inserts one row naming the
-- table the trigger fired on.
CREATE FUNCTION elt.note_outside_write() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF current_setting('elt.writer', true) IS DISTINCT FROM 'platform' THEN
        INSERT INTO elt.outside_writes (relid) VALUES (TG_RELID) ON CONFLICT DO NOTHING;
    END IF;
    RETURN NULL;
END $$;

-- Counts carried before this migration were carried by loads that could not see outside writes:
-- every table is counted once more at its next load.
DELETE FROM elt.target_rows;
