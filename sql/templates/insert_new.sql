-- The first load of an empty target (checked under the table's lock) from a file whose keys are
-- unique: nothing can conflict, so a plain INSERT does it without conflict handling. In key
-- order (sorted unless the file was in key order): the primary key's index then grows at its
-- end (1M rows in a random order: 1.8-2.3 s instead of 3.7-4.0 s).
INSERT INTO {target} ({columns})
SELECT {columns} FROM {staging}
WHERE _elt_load = %(load)s
{key_order}
