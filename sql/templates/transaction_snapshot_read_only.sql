-- One consistent, read-only snapshot for a whole export.
SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY
