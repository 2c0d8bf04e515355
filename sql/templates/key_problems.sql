-- Without a primary key constraint: how many keys repeat, and how many rows have a NULL key part.
SELECT (SELECT count(*) FROM (SELECT 1 FROM {target} WHERE {all_not_null}
                              GROUP BY {key} HAVING count(*) > 1) AS d),
       (SELECT count(*) FROM {target} WHERE {any_null})
