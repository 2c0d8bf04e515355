-- Record what one sensor tick saw (arrays: one element per file that is new or changed).
INSERT INTO elt.landing_files AS f
    (dataset, file, size_bytes, mtime_ns, seen_at, sha256, hashed_size_bytes, hashed_mtime_ns,
     hashed_etag, requested_at)
SELECT %(dataset)s, o.file, o.size_bytes, o.mtime_ns, now(), o.sha256, o.hashed_size_bytes,
       o.hashed_mtime_ns, o.hashed_etag, CASE WHEN o.requested THEN now() END
FROM unnest(%(files)s::text[], %(sizes)s::bigint[], %(mtimes)s::bigint[], %(hashes)s::text[],
            %(hashed_sizes)s::bigint[], %(hashed_mtimes)s::bigint[], %(hashed_etags)s::text[],
            %(requested)s::boolean[])
     AS o(file, size_bytes, mtime_ns, sha256, hashed_size_bytes, hashed_mtime_ns, hashed_etag,
          requested)
ON CONFLICT (dataset, file) DO UPDATE
SET size_bytes = EXCLUDED.size_bytes, mtime_ns = EXCLUDED.mtime_ns, seen_at = now(),
    sha256 = COALESCE(EXCLUDED.sha256, f.sha256),
    hashed_size_bytes = COALESCE(EXCLUDED.hashed_size_bytes, f.hashed_size_bytes),
    hashed_mtime_ns = COALESCE(EXCLUDED.hashed_mtime_ns, f.hashed_mtime_ns),
    -- hashed now: this ETag (NULL for a file); not hashed: the one of the last hash
    hashed_etag = CASE WHEN EXCLUDED.sha256 IS NOT NULL THEN EXCLUDED.hashed_etag
                       ELSE f.hashed_etag END,
    requested_at = COALESCE(EXCLUDED.requested_at, f.requested_at)
