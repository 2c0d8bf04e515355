-- Add a column to a dataset's staging table and target, or widen it, through the owner's narrow
-- function (migrations/0007_schema_evolution_door.sql): the runtime role has no DDL of its own.
SELECT elt.evolve_column(%(dataset)s, %(schema)s, %(table)s, %(column)s, %(type)s)
