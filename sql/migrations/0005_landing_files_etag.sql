-- The ETag an object had when the sensor hashed it, where the landing zone has ETags (a bucket).
-- S3 lists LastModified to the second: a key rewritten within the same second with the same size
-- differs from what was hashed only in its ETag. NULL for a directory's files, and on rows from
-- before 0005 (such an object is hashed once more, and found unchanged).
ALTER TABLE elt.landing_files ADD COLUMN hashed_etag text;
