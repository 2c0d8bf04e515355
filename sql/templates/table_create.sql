CREATE {unlogged} TABLE {table} (
    {definitions}
)
