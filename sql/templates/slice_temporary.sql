-- A temporary table for one file's slice, shaped like its staging table: a file loaded straight
-- from its staged step (postgres/staging.py) goes through it. Dropped when the transaction ends.
CREATE TEMPORARY TABLE {slice} (LIKE {staging}) ON COMMIT DROP
