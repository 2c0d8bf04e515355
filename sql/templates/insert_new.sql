-- The first load of an empty target (checked under the table's lock) from a file whose keys are
-- unique: nothing can conflict, so a plain INSERT does it without conflict handling.
INSERT INTO {target} ({columns})
SELECT {columns} FROM {staging}
WHERE _elt_file = %(file)s
