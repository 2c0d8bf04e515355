-- An alert for one channel, unless this event was already recorded for it (then nothing).
INSERT INTO elt.alert_outbox (event_key, channel, kind, dataset, file, alert)
VALUES (%(event_key)s, %(channel)s, %(kind)s, %(dataset)s, %(file)s, %(alert)s)
ON CONFLICT (event_key, channel) DO NOTHING
