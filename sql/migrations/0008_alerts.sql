-- Alerts (README, Alerts): one row per event and channel. The unique key is what makes an event
-- alerted once: a restarted daemon, a second sensor or a second failure of the same content
-- finds its row there and sends nothing. A channel is named, never its secret (the variable that
-- holds a webhook's URL; the recipients of an e-mail). Rows are kept as the alerts' history.
CREATE TABLE elt.alert_outbox (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_key       text        NOT NULL,  -- e.g. file_failed/<dataset>/<sha256>
    channel         text        NOT NULL,  -- webhook:<VARIABLE>:<format> or email:<recipients>
    kind            text        NOT NULL,
    dataset         text        NOT NULL,
    file            text,
    alert           jsonb       NOT NULL,  -- the alert's fields, as the channels render them
    status          text        NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'sent', 'dead')),
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz,
    UNIQUE (event_key, channel)
);
CREATE INDEX alert_outbox_due ON elt.alert_outbox (next_attempt_at) WHERE status = 'pending';

-- What the alert sensors ask of the manifest on every tick, answered from small indexes: files
-- that failed lately, and each dataset's newest successful load (its freshness).
CREATE INDEX ingestion_manifest_failed
    ON elt.ingestion_manifest (finished_at) WHERE status = 'failed';
CREATE INDEX ingestion_manifest_newest_success
    ON elt.ingestion_manifest (dataset, finished_at) WHERE status = 'success';
