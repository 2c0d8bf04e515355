-- What the staged step recorded for this content of the file (see manifest_staged.sql).
SELECT stage_report
FROM elt.ingestion_manifest
WHERE dataset = %(dataset)s AND file = %(file)s AND sha256 = %(sha256)s
