-- What the staged step found in a file, written by the staging IO manager in the same
-- transaction as the slice: counts, policy violations, failures per check, a sample of the
-- quarantined rows, how the header met the contract. The staged asset builds its checks from
-- it (the data flows one way: asset -> IO manager -> this row -> checks). NULL before 0004.
ALTER TABLE elt.ingestion_manifest ADD COLUMN stage_report jsonb;
