-- Runs that end without finishing their file (process killed, node lost, retries exhausted) leave
-- its manifest row `running`. The sensor and `elt ingest` recognise such stale rows and mark them
-- `interrupted`; the file is then loaded again. `interruptions` counts how often that happened to
-- this content, so a file that kills every run it is in (out of memory?) is retried only a few
-- times and then marked `failed`.
ALTER TABLE elt.ingestion_manifest
    DROP CONSTRAINT ingestion_manifest_status_check,
    ADD CONSTRAINT ingestion_manifest_status_check
        CHECK (status IN ('running', 'success', 'failed', 'duplicate', 'interrupted')),
    ADD COLUMN interruptions integer NOT NULL DEFAULT 0 CHECK (interruptions >= 0);
CREATE INDEX ingestion_manifest_interrupted
    ON elt.ingestion_manifest (dataset) WHERE status = 'interrupted';
