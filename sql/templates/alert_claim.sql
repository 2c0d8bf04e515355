-- Alerts due for delivery, claimed for a while: another sensor's tick skips them meanwhile, and
-- one whose sender died is due again once the claim runs out.
UPDATE elt.alert_outbox AS o
SET next_attempt_at = now() + make_interval(secs => %(claim_seconds)s)
FROM (
    SELECT id FROM elt.alert_outbox
    WHERE status = 'pending' AND next_attempt_at <= now()
    ORDER BY next_attempt_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
) AS due
WHERE o.id = due.id
RETURNING o.id, o.channel, o.alert, o.attempts
