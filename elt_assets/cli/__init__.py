"""The `elt` command (command.py) and the work of each subcommand, one module each."""
