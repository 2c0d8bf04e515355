-- Block writes by anyone else until the transaction ends (readers are not blocked), so a plain
-- INSERT that relies on the table being empty cannot meet a row written in between.
LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE
