-- Move the staged rows whose {columns} values appear more than once in this file to the
-- quarantine (a `unique` check spans the whole file, so it runs here, on the staged slice).
WITH counted AS (
    SELECT _elt_row, count(*) OVER (PARTITION BY {columns}) AS _elt_occurrences
    FROM {staging}
    WHERE _elt_load = %(load)s AND {all_not_null}
), moved AS (
    DELETE FROM {staging} AS s
    USING counted AS d
    WHERE s._elt_load = %(load)s AND s._elt_row = d._elt_row AND d._elt_occurrences > 1
    RETURNING s.*, d._elt_occurrences
)
INSERT INTO elt.quarantine
    (dataset, file, sha256, row_number, column_name, check_name, reason, failures, raw_record,
     run_id)
SELECT %(dataset)s::text, %(file)s::text, %(sha256)s::text, m._elt_row, %(first_column)s::text,
       'unique',
       reason.text,
       jsonb_build_array(jsonb_build_object(
           'column', %(first_column)s::text, 'check', 'unique', 'reason', reason.text)),
       to_jsonb(m.*) - '_elt_file' - '_elt_row' - '_elt_load' - '_elt_occurrences',
       %(run_id)s::text
FROM moved AS m
CROSS JOIN LATERAL (
    SELECT format('%%s: %%s appears %%s times in the file (check unique)',
                  %(label)s::text, {values_text}, m._elt_occurrences) AS text
) AS reason
