-- One creator of a dataset's tables at a time: the runs of a new dataset start together, and a
-- second CREATE TABLE of the same table would fail (held until the transaction ends).
SELECT pg_advisory_xact_lock(hashtext('elt:ddl'))
