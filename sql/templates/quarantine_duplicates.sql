-- Move the staged rows whose {columns} values appear more than once in this file to the
-- quarantine (a `unique` check spans the whole file, so it runs here, on the staged slice).
WITH counted AS (
    SELECT _elt_row, count(*) OVER (PARTITION BY {columns}) AS occurrences
    FROM {staging}
    WHERE _elt_file = %(file)s AND {all_not_null}
), moved AS (
    DELETE FROM {staging} AS s
    USING counted AS d
    WHERE s._elt_file = %(file)s AND s._elt_row = d._elt_row AND d.occurrences > 1
    RETURNING s.*, d.occurrences
)
INSERT INTO elt.quarantine
    (dataset, file, sha256, row_number, column_name, check_name, reason, failures, raw_record,
     run_id)
SELECT %(dataset)s, %(file)s, %(sha256)s, m._elt_row, %(first_column)s, 'unique',
       reason.text,
       jsonb_build_array(jsonb_build_object(
           'column', %(first_column)s, 'check', 'unique', 'reason', reason.text)),
       to_jsonb(m) - '_elt_file' - '_elt_row' - 'occurrences',
       %(run_id)s
FROM moved AS m
CROSS JOIN LATERAL (
    SELECT format('%%s: %%s appears %%s times in the file (check unique)',
                  %(label)s, {values_text}, m.occurrences) AS text
) AS reason
