-- Files and rows per dataset and status, for the metrics endpoint (one pass over the manifest).
SELECT dataset, status, count(*) AS files,
       coalesce(sum(size_bytes), 0) AS bytes,
       coalesce(sum(rows_inserted), 0) AS rows_inserted,
       coalesce(sum(rows_updated), 0) AS rows_updated,
       coalesce(sum(rows_quarantined), 0) AS rows_quarantined
FROM elt.ingestion_manifest
GROUP BY dataset, status
