-- Append mode: the file's rows, once. The caller first deletes the file's previous slice, so
-- loading the same file again replaces its rows instead of appending them twice.
INSERT INTO {target} ({columns}, _elt_file)
SELECT {columns}, _elt_file FROM {staging}
WHERE _elt_load = %(load)s
ORDER BY _elt_row
