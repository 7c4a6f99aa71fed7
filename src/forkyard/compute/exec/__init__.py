"""Exec (plain and streamed) and files inside an instance (tags exec, files).

- `claim`: the hot path, the one module here that knows SQL: claiming a running instance for one
  call (its route cached per process), and closing an exec's record beside its answer.
- `run`: POST /exec, a command to completion. `stream`: POST /exec/stream, server-sent frames.
- `history`: GET /exec, the recent execs. `files`: read, write, edit and list files.

Every file path resolves inside the instance's own mount namespace: the guest agent does the
work in there."""

from forkyard.compute.exec import files, history, run, stream
from forkyard.compute.exec.routers import exec_router, files_router

# Imported for their routes, in the reference's order (run, stream, history; then files).
__all__ = ["exec_router", "files", "files_router", "history", "run", "stream"]
