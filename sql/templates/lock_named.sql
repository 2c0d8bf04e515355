-- Set-up that must not run in two processes at once (on any host); a session lock, gone with
-- the connection (also when its process dies).
SELECT pg_advisory_lock(hashtext(%(name)s))
