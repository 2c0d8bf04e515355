-- A channel took the alert.
UPDATE elt.alert_outbox
SET status = 'sent', sent_at = now(), attempts = attempts + 1, last_error = NULL
WHERE id = %(id)s
