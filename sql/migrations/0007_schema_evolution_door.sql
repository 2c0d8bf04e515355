-- Schema evolution through one narrow door (policy.new_columns: add, policy.type_changes: widen).
--
-- The runtime role (elt_loader where the platform runs with separate roles) has no DDL on any
-- table. A file that brings a new column or a value wider than its column calls
-- elt.evolve_column, which runs as the owner of the platform's tables (SECURITY DEFINER) and does
-- exactly one of two things to one dataset's staging table and target:
--   - add a nullable column, with no default (earlier rows read NULL);
--   - widen a column's type along an allow-list (elt.type_widens); never narrow, never drop.
-- Names are checked and quoted (%I), types are taken only from an allow-list of spellings, and
-- both tables must be the platform's own: owned by this function's owner, the staging table
-- carrying the platform's row and file columns, the target holding every column of it.

-- Every version also records the columns it widened ({"column": "type"}, all so far) and the
-- whole effective schema: [{"name", "type"}] in table order (NULL for versions recorded before).
ALTER TABLE elt.schema_versions ADD COLUMN widened jsonb NOT NULL DEFAULT '{}';
ALTER TABLE elt.schema_versions ADD COLUMN columns jsonb;

-- Whether a column of type `narrow` may become `wide` (both as format_type() spells them)
-- without losing or changing any value it holds.
CREATE FUNCTION elt.type_widens(narrow text, wide text) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n text[];
    w text[];
BEGIN
    IF narrow = 'smallint' THEN RETURN wide IN ('integer', 'bigint', 'numeric'); END IF;
    IF narrow = 'integer' THEN RETURN wide IN ('bigint', 'numeric'); END IF;
    IF narrow = 'bigint' THEN RETURN wide = 'numeric'; END IF;
    IF narrow = 'real' THEN RETURN wide = 'double precision'; END IF;
    IF narrow = 'date' THEN RETURN wide = 'timestamp without time zone'; END IF;
    n := regexp_match(narrow, '^character varying\(([0-9]+)\)$');
    IF n IS NOT NULL THEN
        w := regexp_match(wide, '^character varying\(([0-9]+)\)$');
        RETURN wide = 'text' OR (w IS NOT NULL AND w[1]::int > n[1]::int);
    END IF;
    n := regexp_match(narrow, '^numeric\(([0-9]+),([0-9]+)\)$');
    IF n IS NOT NULL THEN
        w := regexp_match(wide, '^numeric\(([0-9]+),([0-9]+)\)$');
        -- as many digits before the point and at least as many after it
        RETURN wide = 'numeric' OR (
            w IS NOT NULL AND w <> n AND w[2]::int >= n[2]::int
            AND w[1]::int - w[2]::int >= n[1]::int - n[2]::int
        );
    END IF;
    RETURN false;
END
$$;

CREATE FUNCTION elt.evolve_column(
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
    -- with the platform's row and file columns, the target with every column staging has.
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
            AND s.attname NOT IN ('_elt_row', '_elt_file')
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

-- Functions are executable by everyone unless taken back; only the runtime gets this one
-- (sql/grants.sql, with separate roles; in single-role mode its owner is the runtime).
REVOKE ALL ON FUNCTION elt.evolve_column(text, text, text, text, text) FROM PUBLIC;
