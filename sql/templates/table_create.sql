CREATE {unlogged} TABLE {table} (
    {definitions}
){storage}
