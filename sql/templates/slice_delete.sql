-- Remove one file's slice (staging, or an append-mode target).
DELETE FROM {table} WHERE _elt_file = %(file)s
