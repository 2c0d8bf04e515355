-- A channel did not take the alert: due again after `delay_seconds`, or given up (`dead`) after
-- `max_attempts`; the error is kept for the people reading the outbox.
UPDATE elt.alert_outbox
SET attempts = attempts + 1,
    status = CASE WHEN attempts + 1 >= %(max_attempts)s THEN 'dead' ELSE 'pending' END,
    next_attempt_at = now() + make_interval(secs => %(delay_seconds)s),
    last_error = %(error)s
WHERE id = %(id)s
RETURNING status
