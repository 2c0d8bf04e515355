-- One file's staged slice into a history (SCD2) table, which keeps every version of each key:
-- [_elt_valid_from, _elt_valid_to), the current one open (NULL). The file's rows are merged with
-- the existing versions of their keys, in version order: a row whose values are those of the
-- version before it changes nothing (a run of equal versions is one version, from its first);
-- a late row goes between the versions around it, never over them; a row of the same key and
-- version as an existing one corrects it (a tie: the later load wins, as in an upsert); a key
-- closed by a snapshot stays absent until a version after the closing. The table is then brought
-- to that result row by row (other keys untouched) and, with history.close_missing, the current
-- versions of keys the file does not have are closed. Apart from ties, the result depends on the
-- versions alone, not on the order files arrive in.
-- Its own columns (_elt_vf, _elt_gap, ...) carry the platform's reserved prefix, so that no
-- column of the contract can be mistaken for one of them.
WITH source AS MATERIALIZED (
    SELECT DISTINCT ON ({key}, _elt_vf) *
    FROM (
        SELECT {columns}, {valid_from} AS _elt_vf, _elt_row
        FROM {staging}
        WHERE _elt_load = %(load)s
    ) AS slice
    ORDER BY {key}, _elt_vf, _elt_row DESC
), existing AS MATERIALIZED (
    SELECT {t_columns}, t._elt_valid_from AS _elt_vf, t._elt_valid_to AS _elt_vt
    FROM {target} AS t
    WHERE ({t_key}) IN (SELECT {key} FROM source)
), gaps AS (
    -- where a key was closed (history.close_missing) and absent until its next version, if any
    SELECT {key}, x._elt_vt AS _elt_vf
    FROM (
        SELECT e.*, lead(e._elt_vf) OVER (PARTITION BY {key} ORDER BY e._elt_vf) AS _elt_next_vf
        FROM existing AS e
    ) AS x
    WHERE x._elt_vt IS NOT NULL AND (x._elt_next_vf IS NULL OR x._elt_next_vf > x._elt_vt)
), combined AS (
    -- the key's versions as they are, a tie taking the file's values ...
    SELECT {e_key}, e._elt_vf, {merged_others}, true AS _elt_existed, false AS _elt_gap,
           (s._elt_vf IS NOT NULL AND {e_differs_from_s}) AS _elt_corrected
    FROM existing AS e
    LEFT JOIN source AS s ON ({e_key}, e._elt_vf) = ({s_key}, s._elt_vf)
    UNION ALL
    -- ... the file's new versions ...
    SELECT {s_key}, s._elt_vf, {s_others}, false, false, false
    FROM source AS s
    WHERE NOT EXISTS (
        SELECT 1 FROM existing AS e WHERE ({e_key}, e._elt_vf) = ({s_key}, s._elt_vf)
    )
    UNION ALL
    -- ... and the gaps, which end the version before them
    SELECT {g_key}, g._elt_vf, {null_others}, false, true, false
    FROM gaps AS g
), neighbours AS (
    SELECT c.*,
           row_number() OVER w AS _elt_n,
           lag(c._elt_gap) OVER w AS _elt_after_gap,
           lag(ROW({compared})) OVER w AS _elt_prev_values
    FROM combined AS c
    WINDOW w AS (PARTITION BY {key} ORDER BY c._elt_vf, c._elt_gap DESC)
), final AS (
    -- the versions that start something (a gap, or values other than the version's before),
    -- each ending where the next thing starts
    SELECT k.*,
           lead(k._elt_vf) OVER (PARTITION BY {key} ORDER BY k._elt_vf, k._elt_gap DESC)
               AS _elt_new_vt
    FROM neighbours AS k
    WHERE k._elt_gap OR k._elt_n = 1 OR k._elt_after_gap
       OR ROW({compared}) IS DISTINCT FROM k._elt_prev_values
), deleted AS (
    DELETE FROM {target} AS t
    USING existing AS e
    WHERE ({t_key}, t._elt_valid_from) = ({e_key}, e._elt_vf)
      AND NOT EXISTS (
          SELECT 1 FROM final AS f
          WHERE f._elt_existed AND ({f_key}, f._elt_vf) = ({e_key}, e._elt_vf)
      )
    RETURNING 1
), changed AS (
    UPDATE {target} AS t
    SET {assign_others}, _elt_valid_to = f._elt_new_vt
    FROM final AS f
    WHERE f._elt_existed AND ({t_key}, t._elt_valid_from) = ({f_key}, f._elt_vf)
      AND (f._elt_corrected OR t._elt_valid_to IS DISTINCT FROM f._elt_new_vt)
    RETURNING f._elt_corrected
), inserted AS (
    INSERT INTO {target} ({columns}, _elt_valid_from, _elt_valid_to)
    SELECT {f_columns}, f._elt_vf, f._elt_new_vt
    FROM final AS f
    WHERE NOT f._elt_existed AND NOT f._elt_gap
    RETURNING 1
), closed AS (
    UPDATE {target} AS t
    SET _elt_valid_to = {snapshot_at}
    WHERE %(close_missing)s AND t._elt_valid_to IS NULL AND t._elt_valid_from < {snapshot_at}
      AND NOT EXISTS (SELECT 1 FROM source AS s WHERE ({s_key}) = ({t_key}))
    RETURNING 1
)
SELECT (SELECT count(*) FROM source) AS source_rows,
       (SELECT count(*) FROM inserted) AS inserted,
       (SELECT count(*) FILTER (WHERE _elt_corrected) FROM changed) AS corrected,
       (SELECT count(*) FROM closed) AS closed,
       (SELECT count(*) FROM deleted) AS merged
