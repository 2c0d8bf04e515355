-- The sensor's memory of one dataset's files.
SELECT file, size_bytes, mtime_ns, sha256, hashed_size_bytes, hashed_mtime_ns, hashed_etag
FROM elt.landing_files
WHERE dataset = %(dataset)s
