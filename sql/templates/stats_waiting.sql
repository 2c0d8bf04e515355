-- Files the sensor has seen whose current content is not finished yet (not seen stable, not
-- requested, queued, running or interrupted), per dataset.
SELECT seen.dataset, count(*)
FROM elt.landing_files AS seen
WHERE NOT EXISTS (
    SELECT FROM elt.ingestion_manifest AS m
    WHERE m.dataset = seen.dataset AND m.file = seen.file AND m.sha256 = seen.sha256
      AND m.status IN ('success', 'failed', 'duplicate'))
GROUP BY seen.dataset
