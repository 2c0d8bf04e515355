-- Each target table's row count as the platform's own loads left it (postgres/load.py). A load
-- updates it in its transaction, under the table's lock, from what it inserted and removed, so a
-- batch of small files does not count a growing table once per file. Every run counts the table
-- with count(*) at its first load (a change made outside the platform shows there), and a table
-- that was dropped and created again has a new relid, so it is counted afresh.
CREATE TABLE elt.target_rows (
    relid      oid         PRIMARY KEY,  -- the table's pg_class oid
    target     text        NOT NULL,     -- its name, for people reading this table
    row_count  bigint      NOT NULL,
    counted_at timestamptz NOT NULL,     -- the last count(*); carried forward since
    updated_at timestamptz NOT NULL DEFAULT now()
);
