"""Command-line entry points: one small module per command, each parsing arguments and
calling the library. Errors the user can act on end as one line and exit code 2."""
