-- One file's staged slice into the target: at most one row per key (the highest version, then
-- the last row of the file), inserted when new, updated only when something really changed and
-- the incoming version is not older. Returns what happened.
WITH source AS MATERIALIZED (
    SELECT DISTINCT ON ({key}) {columns}
    FROM {staging}
    WHERE _elt_load = %(load)s
    ORDER BY {key}, {order_within_key}
), written AS (
    INSERT INTO {target} AS t ({columns})
    SELECT {columns} FROM source
    ON CONFLICT ({key}) DO {conflict_action}
    RETURNING (xmax = 0) AS inserted
)
SELECT (SELECT count(*) FROM source) AS source_rows,
       count(*) FILTER (WHERE inserted) AS inserted,
       count(*) FILTER (WHERE NOT inserted) AS updated
FROM written
