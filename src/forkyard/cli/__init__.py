"""The `forkyard` command line."""
