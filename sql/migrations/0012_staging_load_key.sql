-- Staging slices keyed by their load instead of their file's name.
--
-- A staging table's key was (_elt_file, _elt_row): a new file's rows went wherever its name sorts
-- among the slices already there, each row a descent of the index (a 200,000-row file into a
-- 1M-row staging table: 0.3 s of its 1 s COPY). Each row now also carries its load, the id of the
-- manifest row of the content it came from (elt.ingestion_manifest.id, an identity that only
-- grows), and the key is (_elt_load, _elt_row): a new slice goes at the index's end, where
-- PostgreSQL appends without a descent. `_elt_file` stays, for people and for messages.
--
-- Existing slices take the id of their file's latest staged attempt (the staged step records its
-- counts in the transaction that writes the slice); a slice no manifest row accounts for is
-- deleted (it could not be loaded: the target step compares the slice with its manifest row, and
-- the landed file can always be staged again).

-- elt.evolve_column (migrations/0007) checks that every staging column but the platform's is in
-- the target: `_elt_load` is the platform's too.
CREATE OR REPLACE FUNCTION elt.evolve_column(
    dataset text, target_schema text, target_table text, column_name text, column_type text
) RETURNS boolean  -- true when a table changed
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    staging regclass;
    target regclass;
    relation regclass;
    current_type text;
    changed boolean := false;
BEGIN
    IF column_name IS NULL OR column_name !~ '^[a-z_][a-z0-9_]{0,62}$'
            OR column_name LIKE '\_elt\_%' THEN
        RAISE EXCEPTION 'elt.evolve_column: % is not a column name the platform adds',
            quote_nullable(column_name) USING ERRCODE = 'invalid_name';
    END IF;
    IF column_type IS NULL OR column_type !~ ('^(smallint|integer|bigint|numeric'
            '|numeric\([0-9]{1,4},[0-9]{1,4}\)|real|double precision|boolean|text'
            '|character varying\([0-9]{1,8}\)|date|timestamp without time zone'
            '|timestamp with time zone|uuid|jsonb|bytea)(\[\])?$') THEN
        RAISE EXCEPTION 'elt.evolve_column: % is not a type the platform adds',
            quote_nullable(column_type) USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF target_schema IN ('elt', 'elt_staging', 'pg_catalog', 'information_schema') THEN
        RAISE EXCEPTION 'elt.evolve_column: permission denied: %.% is not a dataset''s target',
            target_schema, target_table USING ERRCODE = 'insufficient_privilege';
    END IF;
    staging := to_regclass(format('elt_staging.%I', dataset));
    target := to_regclass(format('%I.%I', target_schema, target_table));
    IF staging IS NULL OR target IS NULL THEN
        RAISE EXCEPTION 'elt.evolve_column: dataset % has no staging table or no target %.%',
            dataset, target_schema, target_table USING ERRCODE = 'undefined_table';
    END IF;
    -- The platform's own tables only: both owned by this function's owner, the staging table
    -- with the platform's row and file columns, the target with every column staging has but
    -- the platform's (row, file, load).
    IF EXISTS (
        SELECT FROM pg_class
        WHERE oid IN (staging, target) AND relowner <> (
            SELECT oid FROM pg_roles WHERE rolname = current_user
        )
    ) OR (
        SELECT count(*) FROM pg_attribute
        WHERE attrelid = staging AND attname IN ('_elt_row', '_elt_file') AND NOT attisdropped
    ) <> 2 OR EXISTS (
        SELECT FROM pg_attribute s
        WHERE s.attrelid = staging AND s.attnum > 0 AND NOT s.attisdropped
            AND s.attname NOT IN ('_elt_row', '_elt_file', '_elt_load')
            AND NOT EXISTS (
                SELECT FROM pg_attribute t
                WHERE t.attrelid = target AND t.attname = s.attname AND NOT t.attisdropped
            )
    ) THEN
        RAISE EXCEPTION 'elt.evolve_column: permission denied: %.% is not the target of dataset %',
            target_schema, target_table, dataset USING ERRCODE = 'insufficient_privilege';
    END IF;
    -- Staging first: its lock waits for other files' staging to commit, without holding the
    -- target (which readers use) in the meantime.
    FOREACH relation IN ARRAY ARRAY[staging, target] LOOP
        SELECT format_type(atttypid, atttypmod) INTO current_type
        FROM pg_attribute
        WHERE attrelid = relation AND attname = column_name AND attnum > 0 AND NOT attisdropped;
        IF current_type IS NULL THEN
            EXECUTE format('ALTER TABLE %s ADD COLUMN %I %s', relation, column_name, column_type);
            changed := true;
        ELSIF current_type = column_type OR elt.type_widens(column_type, current_type) THEN
            NULL;  -- as wide already (another file widened it)
        ELSIF elt.type_widens(current_type, column_type) THEN
            EXECUTE format(
                'ALTER TABLE %s ALTER COLUMN %I TYPE %s', relation, column_name, column_type
            );
            changed := true;
        ELSE
            RAISE EXCEPTION 'elt.evolve_column: %.% is %, which does not widen to %',
                relation, column_name, current_type, column_type
                USING ERRCODE = 'datatype_mismatch';
        END IF;
    END LOOP;
    RETURN changed;
END
$$;


DO $$
DECLARE
    staging record;
    key_name name;
BEGIN
    FOR staging IN
        SELECT c.oid::regclass AS relation, c.relname AS dataset
        FROM pg_class AS c
        JOIN pg_namespace AS n ON n.oid = c.relnamespace
        WHERE n.nspname = 'elt_staging' AND c.relkind = 'r'
          AND EXISTS (SELECT FROM pg_attribute WHERE attrelid = c.oid AND attname = '_elt_file'
                      AND NOT attisdropped)
          AND NOT EXISTS (SELECT FROM pg_attribute WHERE attrelid = c.oid
                          AND attname = '_elt_load' AND NOT attisdropped)
    LOOP
        EXECUTE format('ALTER TABLE %s ADD COLUMN _elt_load bigint', staging.relation);
        EXECUTE format(
            'UPDATE %s AS s SET _elt_load = m.id
             FROM (SELECT DISTINCT ON (file) file, id
                   FROM elt.ingestion_manifest
                   WHERE dataset = %L AND rows_staged IS NOT NULL
                   ORDER BY file, started_at DESC, id DESC) AS m
             WHERE s._elt_file = m.file',
            staging.relation, staging.dataset
        );
        EXECUTE format('DELETE FROM %s WHERE _elt_load IS NULL', staging.relation);
        EXECUTE format('ALTER TABLE %s ALTER COLUMN _elt_load SET NOT NULL', staging.relation);
        SELECT conname INTO key_name
        FROM pg_constraint WHERE conrelid = staging.relation AND contype = 'p';
        IF key_name IS NOT NULL THEN
            EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', staging.relation, key_name);
        END IF;
        EXECUTE format('ALTER TABLE %s ADD PRIMARY KEY (_elt_load, _elt_row)', staging.relation);
    END LOOP;
END
$$;
