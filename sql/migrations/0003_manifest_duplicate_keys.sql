-- How many staged rows of a file share a primary key with another row of the same file, counted
-- by the staged step. The target step skips deduplication (DISTINCT ON, a sort of the whole
-- slice) when it is 0; NULL (files staged before this column existed) means "not known".
ALTER TABLE elt.ingestion_manifest ADD COLUMN duplicate_key_rows bigint;
