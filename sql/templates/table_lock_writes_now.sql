-- table_lock_writes, without waiting: fails at once (lock_not_available) if anyone holds a
-- conflicting lock, such as another writer or autovacuum.
LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE NOWAIT
