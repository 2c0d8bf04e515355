-- Content already loaded under another name: recorded, not loaded again.
INSERT INTO elt.ingestion_manifest
    (dataset, file, partition_key, sha256, size_bytes, format, status, duplicate_of, finished_at,
     error)
VALUES
    (%(dataset)s, %(file)s, %(partition_key)s, %(sha256)s, %(size_bytes)s, %(format)s,
     'duplicate', %(duplicate_of)s, now(),
     'same content as ' || %(duplicate_of)s || ', which is already loaded')
ON CONFLICT (dataset, file, sha256) DO NOTHING
