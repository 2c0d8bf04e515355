-- Primary keys that occur more than once in one file: how many, and a few examples.
SELECT count(*) AS keys, coalesce(sum(occurrences), 0) AS rows,
       (array_agg(example ORDER BY occurrences DESC))[1:5] AS examples
FROM (
    SELECT count(*) AS occurrences, {key_text} AS example
    FROM {staging}
    WHERE _elt_load = %(load)s
    GROUP BY {key}
    HAVING count(*) > 1
) AS duplicated
