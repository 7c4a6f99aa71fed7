"""File operations of the agent. Paths resolve in the instance's own root, like any process's."""

from __future__ import annotations

import contextlib
import errno
import os
import stat as stat_mod

from . import protocol as p

# typing costs the agent's cold start milliseconds; the annotations are strings (from
# __future__), so only type checkers need these.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

HOME = "/root"
MAX_LIST_ENTRIES = 10000
MAX_EDIT_BYTES = 64 * 1024 * 1024  # an edit holds the file in the agent's memory twice


class OpError(Exception):
    """A file operation failed with a protocol error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


_ERRNO_CODES = {
    errno.ENOENT: p.E_NOT_FOUND,
    errno.EEXIST: p.E_EXISTS,
    errno.ENOTDIR: p.E_NOT_A_DIRECTORY,
    errno.EISDIR: p.E_IS_A_DIRECTORY,
    errno.ENOTEMPTY: p.E_NOT_EMPTY,
    errno.EACCES: p.E_PERMISSION,
    errno.EPERM: p.E_PERMISSION,
    errno.EROFS: p.E_PERMISSION,
    errno.ENOSPC: p.E_NO_SPACE,
    errno.EDQUOT: p.E_NO_SPACE,
}


def op_error(exc: OSError) -> OpError:
    code = _ERRNO_CODES.get(exc.errno or 0, p.E_INTERNAL)
    return OpError(code, "{}: {}".format(exc.strerror or type(exc).__name__, exc.filename or ""))


def resolve(path: Any) -> str:
    if not isinstance(path, str) or not path or "\0" in path:
        raise OpError(p.E_INVALID, "path must be a non-empty string")
    base = HOME if os.path.isdir(HOME) else "/"
    return os.path.normpath(os.path.join(base, path))


def _type_of(mode: int) -> str:
    if stat_mod.S_ISDIR(mode):
        return "dir"
    if stat_mod.S_ISREG(mode):
        return "file"
    if stat_mod.S_ISLNK(mode):
        return "symlink"
    return "other"


def info(path: str, name: str | None = None) -> dict[str, Any]:
    st = os.lstat(path)
    out: dict[str, Any] = {
        "name": name if name is not None else (os.path.basename(path) or "/"),
        "path": path,
        "type": _type_of(st.st_mode),
        "size": st.st_size,
        "mode": stat_mod.S_IMODE(st.st_mode),
        "mtime": st.st_mtime,
    }
    if out["type"] == "symlink":
        out["target"] = os.readlink(path)
    return out


def do_stat(req: dict[str, Any]) -> dict[str, Any]:
    try:
        return {"entry": info(resolve(req.get("path")))}
    except OSError as exc:
        raise op_error(exc) from None


def do_list(req: dict[str, Any]) -> dict[str, Any]:
    root = resolve(req.get("path"))
    depth = max(1, int(req.get("depth") or 1))
    entries: list[dict[str, Any]] = []
    truncated = False
    try:
        if not os.path.isdir(root):
            if not os.path.lexists(root):
                raise OpError(p.E_NOT_FOUND, f"no such directory: {root}")
            raise OpError(p.E_NOT_A_DIRECTORY, f"not a directory: {root}")
        stack = [(root, 1)]
        while stack and not truncated:
            d, level = stack.pop()
            try:
                with os.scandir(d) as it:
                    children = sorted(it, key=lambda e: e.name)
            except OSError:
                if d == root:
                    raise
                continue
            for e in children:
                if len(entries) >= MAX_LIST_ENTRIES:
                    truncated = True
                    break
                try:
                    entries.append(info(e.path, e.name))
                except OSError:
                    continue
                if level < depth and e.is_dir(follow_symlinks=False):
                    stack.append((e.path, level + 1))
    except OSError as exc:
        raise op_error(exc) from None
    entries.sort(key=lambda e: e["path"])
    return {"entries": entries, "truncated": truncated}


def do_mkdir(req: dict[str, Any]) -> dict[str, Any]:
    path = resolve(req.get("path"))
    mode = int(req.get("mode", 0o755))
    try:
        if req.get("parents", True):
            os.makedirs(path, mode=mode, exist_ok=True)
        else:
            os.mkdir(path, mode)
        return {"entry": info(path)}
    except OSError as exc:
        raise op_error(exc) from None


def do_remove(req: dict[str, Any]) -> dict[str, Any]:
    path = resolve(req.get("path"))
    if path == "/":
        raise OpError(p.E_INVALID, "refusing to remove /")
    try:
        st = os.lstat(path)
        if stat_mod.S_ISDIR(st.st_mode):
            if req.get("recursive"):
                import shutil  # only here: a cold agent need not load it

                shutil.rmtree(path)
            else:
                os.rmdir(path)
        else:
            os.unlink(path)
    except OSError as exc:
        raise op_error(exc) from None
    return {}


def open_regular(path: str):
    """Open a regular file for reading, or refuse: a device (/dev/zero never ends), a FIFO
    (whose open blocks until a writer comes, hence O_NONBLOCK) or a socket is not a file's
    contents. Return the binary file object and its stat."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise op_error(exc) from None
    try:
        st = os.fstat(fd)
        if stat_mod.S_ISDIR(st.st_mode):
            raise OpError(p.E_IS_A_DIRECTORY, f"is a directory: {path}")
        if not stat_mod.S_ISREG(st.st_mode):
            raise OpError(p.E_NOT_REGULAR, f"not a regular file: {path}")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb"), st
    except BaseException:
        os.close(fd)
        raise


def open_for_read(req: dict[str, Any]):
    """The file of a read request at its offset, and how many bytes to send (-1: to the end).

    `limit` bounds the read; `max_size` bounds it too, and refuses up front a whole-file read
    (no `limit`) of a file larger than that, so that a caller learns it before any byte. Files
    whose size the kernel does not know (/proc) are read to EOF or to the bound."""
    path = resolve(req.get("path"))
    offset = int(req.get("offset") or 0)
    limit = req.get("limit")
    max_size = req.get("max_size")
    if offset < 0 or (limit is not None and int(limit) < 0):
        raise OpError(p.E_INVALID, "offset and limit must not be negative")
    f, st = open_regular(path)
    try:
        remaining = int(limit) if limit is not None else -1
        if max_size is not None:
            max_size = int(max_size)
            if remaining < 0 and st.st_size - offset > max_size:
                raise OpError(
                    p.E_TOO_LARGE,
                    f"{path} is {st.st_size} bytes; read at most {max_size} at a time "
                    "(offset and limit)",
                )
            remaining = max_size if remaining < 0 else min(remaining, max_size)
        f.seek(offset)
        return f, st.st_size, remaining
    except BaseException:
        f.close()
        raise


def open_for_write(req: dict[str, Any]):
    """Open the destination of a write; return (fd, tmp path or None, final path, mode).

    With an `offset`, the bytes go into the file as it is, from there on (created with `mode`
    if missing, nothing cut, its mode kept: mode None); a write in parts, as SFTP makes one."""
    path = resolve(req.get("path"))
    mode = int(req.get("mode", 0o644))
    offset = req.get("offset")
    try:
        parent = os.path.dirname(path)
        if req.get("make_parents", True):
            os.makedirs(parent, exist_ok=True)
        if os.path.isdir(path):
            raise OpError(p.E_IS_A_DIRECTORY, f"is a directory: {path}")
        if offset is not None:
            if int(offset) < 0:
                raise OpError(p.E_INVALID, "offset must not be negative")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, mode)
            os.lseek(fd, int(offset), os.SEEK_SET)
            return fd, None, path, None
        if req.get("atomic", True):
            import tempfile  # only here: a cold agent need not load it

            fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=parent)
            return fd, tmp, path, mode
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
        return fd, None, path, mode
    except OSError as exc:
        raise op_error(exc) from None


def finish_write(fd: int, tmp: str | None, path: str, mode: int | None, ok: bool) -> None:
    try:
        if ok and mode is not None:
            os.fchmod(fd, mode)
    finally:
        os.close(fd)
    if tmp is not None:
        if ok:
            os.replace(tmp, path)
        else:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def do_edit(req: dict[str, Any]) -> dict[str, Any]:
    """Replace exactly one occurrence (or all with replace_all); otherwise change nothing."""
    path = resolve(req.get("path"))
    old, new = req.get("old_str"), req.get("new_str")
    if not isinstance(old, str) or not isinstance(new, str) or not old:
        raise OpError(p.E_INVALID, "old_str must be a non-empty string and new_str a string")
    old_b, new_b = old.encode("utf-8"), new.encode("utf-8")
    f, st = open_regular(path)
    try:
        with f:
            if st.st_size > MAX_EDIT_BYTES:
                raise OpError(
                    p.E_TOO_LARGE,
                    f"{path} is {st.st_size} bytes; edits take at most {MAX_EDIT_BYTES}",
                )
            data = f.read(MAX_EDIT_BYTES + 1)
        if len(data) > MAX_EDIT_BYTES:  # it grew since, or the kernel did not know its size
            raise OpError(p.E_TOO_LARGE, f"{path} is over {MAX_EDIT_BYTES} bytes")
        count = data.count(old_b)
        if count == 0 or (count > 1 and not req.get("replace_all")):
            return {"count": count, "replaced": 0}
        out = data.replace(old_b, new_b)
        import tempfile

        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=os.path.dirname(path))
        try:
            write_all(fd, out)
            os.fchmod(fd, stat_mod.S_IMODE(st.st_mode))
        finally:
            os.close(fd)
        os.replace(tmp, path)
        return {"count": count, "replaced": count}
    except OSError as exc:
        raise op_error(exc) from None
